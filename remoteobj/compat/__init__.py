"""Compatibility layers for code written against older Pyro APIs.

- :mod:`remoteobj.compat.pyro4`: Pyro4's names (``Daemon()``, ``locateNS()``,
  ``requestLoop()``, ``Proxy("PYRONAME:...")``, ``Pyro4.core.Proxy``...) over
  remoteobj, so such code runs after changing one import line::

      import remoteobj.compat.pyro4 as Pyro4

These layers change the Python API only: the wire is always Pyro5's protocol
502 (remoteobj does not speak Pyro4's protocol 48), so peers must be Pyro5 or
remoteobj programs.
"""
