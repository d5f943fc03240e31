"""The composition root: the only package that imports components (keymgr, throttle, usage, billing,
xds). `registry` lists them, `runner` hosts them in one process, `cli` is the `tollway` command."""
