"""Tollway's xDS control plane: Envoy listeners, routes and clusters built from the catalog, served
over ADS (state of the world) with make-before-break ordering and NACK handling."""

from pkgutil import extend_path

# The xds-protos wheel also ships a top-level `xds` package (xds.core.v3, xds.type.matcher.v3, ...)
# that Envoy's generated *_pb2 modules import. This package shadows it whenever the repository is on
# sys.path first, so its subpackages are added to our search path: both then import as `xds.*`.
__path__ = extend_path(__path__, __name__)
