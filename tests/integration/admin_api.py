"""The admin key of the ``api`` fixture (``conftest.py``): a fresh deployment (its own topic
prefix, 2 usage partitions, topics created) and the API on it, the setup of the integration
tests that configure a tenant over HTTP and check what a real worker decides."""

ADMIN = "csa_" + "integration-admin-key-of-the-tests-" * 2
