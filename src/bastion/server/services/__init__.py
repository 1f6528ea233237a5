"""Domain logic with no HTTP in it: called from endpoints, the REST API and the CLI."""
