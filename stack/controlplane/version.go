package main

// kubernetesVersion is the k8s.io/kubernetes release this binary is built from;
// keep it equal to the require line in go.mod (the stack's cache key uses it).
const kubernetesVersion = "v1.35.4"
