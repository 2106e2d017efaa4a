"""The process kubelet: plays the kubelet for pods on one Node by running each
container as a local process (see `python -m stack.kubelet --help`).

Modules: `node` (Node + Lease), `kubelet` (pod watch, workers), `pods` (one
pod's lifecycle), `container` / `envvars` / `mounts` / `volumes` (from spec to
process), `runtime` + `shim` (processes that survive a kubelet restart),
`status` (status documents), `logs` + `logserver` (`kubectl logs`), `images`
(image → runtime config, `images.yaml`).
"""
