"""The seed's two programs on remoteobj: ``examples.greeting`` and ``examples.chain``.

A package only so that ``python -m examples.chain`` runs the chain demo from
the repository root; every script also runs on its own
(``python examples/greeting/server.py``).
"""
