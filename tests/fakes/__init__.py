"""The test doubles every test shares, one module by what it fakes (an upstream registry, object
storage, a signature repository, blobs and layer caches, an advisory source, a clock, a failing
database, plug-in verifiers). A fake that only one test file needs may stay in that file."""
