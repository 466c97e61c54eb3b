"""One module per resource of the Distribution spec, each with one function per HTTP verb."""
