"""{{name}}: a federated app for Pollen."""
