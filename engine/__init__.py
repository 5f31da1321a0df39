"""sluice: an L7 proxy data plane with a compiled hot path.

The embedding API (Proxy, load_config, Snapshot, the filter base class) lives here; see
DESIGN.md. Importing `engine` itself never requires the compiled modules, so `sluice validate`
works on a machine without a compiler."""

__version__ = "0.1.0"
