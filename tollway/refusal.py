"""A process that refuses to start, as an exception of its own module: the CLI and every component's
`refuse_unsafe` raise or catch it without importing gRPC or SQLAlchemy (tollway.errors, which maps
errors to gRPC statuses, re-exports it)."""


class StartupRefused(RuntimeError):
    """A process refuses to start in a setup that would break a guarantee (e.g. two throttle replicas
    on in-memory counters would each admit the whole limit); the message says what to change."""
