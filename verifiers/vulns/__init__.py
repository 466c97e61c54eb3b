"""Offline vulnerability matching: OSV advisory records against an image's package inventory.

``osv`` parses records into frozen values, ``versions`` orders versions the way each ecosystem
does, ``match`` applies OSV's range semantics, ``severity`` scores a record, ``load`` reads
records from files, directories and OSV's per-ecosystem zip archives.
"""
