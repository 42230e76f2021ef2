"""Authentication and authorization: SCRAM credentials (credentials.py), the per-connection SASL
state machine (sasl.py), both sans-IO. Import from the modules: the package stays light to import."""
