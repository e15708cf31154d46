"""The database schema's history: Alembic revisions shipped in the package.

``env.py`` runs them on a connection handed over by :mod:`bastion.service.migrate` (the only
caller), never from an ``alembic.ini``: the URL, the driver and the lock come from bastion.
``versions/`` holds one file per revision, named after it (``0001_…``); a new column or table
is a new revision there, together with its model.
"""
