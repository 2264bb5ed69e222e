//! Transient vs permanent AppFlow errors (to be written).
