"""Persistence of training jobs and evaluations: one ``JobStore`` on SQLite (the default, a
file in the data directory) or PostgreSQL (``GPT_SERVICE_DATABASE_URL``, several replicas).

``records`` (typed rows, the shared status enum), ``schema`` + ``migrations/`` (Alembic,
applied by ``migrate`` at start-up), ``engine`` (the SQLAlchemy engine with PostgreSQL's
``connect_timeout``, ``StoreBase``: transactions, ``NOTIFY``, the lease clock), ``jobs`` (the
store: rows, claims, leases), ``leases`` (each replica's lease keeper and sweep), ``notify``
(LISTEN/NOTIFY change feed for streams), ``outage`` (an outage logged once a minute, not per
poll).
"""
