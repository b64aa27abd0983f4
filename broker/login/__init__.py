"""The login transaction: one sealed :class:`~broker.login.flow.LoginFlow` and the steps that carry it.

==============  ====================================================================
module          concern
==============  ====================================================================
``flow``        the typed login flow (pure)
``seal``        the flow's AEAD cookie
``steps``       the declared steps of a login and its error exits
``context``     the request as SATOSA plugins see it (``Context``, typed)
``proxy``       the login path's WSGI application: routing, refusals, the flow cookie
``router``      path -> endpoint, one dict read
``selection``   which IdP a request names
``discovery``   the city page's endpoints (POST with the flow's CSRF token)
``plugins``     SATOSA micro-services in the chain
``cookies``     cookie names and attributes
==============  ====================================================================
"""
