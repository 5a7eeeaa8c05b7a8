//! Raw resources to the typed model with Calico v3.32.1 validation; every diagnostic collected.
