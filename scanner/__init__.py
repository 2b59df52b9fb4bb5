"""The vulnerability scanner's pure core: layer indexing (``index``), advisory feeds (``feeds``) and
matching (``match``). No database, no HTTP: the scan jobs, models, API and notifications build on it."""
