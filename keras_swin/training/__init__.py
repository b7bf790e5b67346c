"""Training: the shared recipe (`recipe`), one module per task (`classification`,
`segmentation`) and multi-worker training on JAX (`multiworker`)."""
