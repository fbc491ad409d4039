"""The same service on a Ray Serve cluster (the optional `cluster` extra): see app/cluster/application.py."""
