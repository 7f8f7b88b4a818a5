"""The amphora agent: the REST API the controller drives an amphora through (reference
§4), and the supervision of the HAProxy processes it runs. Imports only
``amphorae.common``, so an amphora needs none of the controller's code."""
