//! loom models of the pool core; see tests/.
