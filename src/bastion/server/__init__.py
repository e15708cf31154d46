"""What `bastion serve` runs: the server runtime, apart from the stack and the service.

* :mod:`~bastion.server.serve` — the serve loop: listeners, uvicorn servers, worker processes
  (the only place, with :mod:`~bastion.server.protocol`, where uvicorn is imported).
* :mod:`~bastion.server.connections` — accepting: caps per client and per process, TLS.
* :mod:`~bastion.server.protocol` — HTTP/1.1 with the contract's limits and timeouts.
* :mod:`~bastion.server.head` — a request head checked against the limits as it arrives.
* :mod:`~bastion.server.refusals` — answers given before the app, through the stack's layers.
* :mod:`~bastion.server.limits`, :mod:`~bastion.server.files` — the limits; the open-file limit.
* :mod:`~bastion.server.tls` — the hardened TLS context and the development certificate.

Nothing is imported here, so ``bastion.server.tls`` can be used without uvicorn installed.
"""
