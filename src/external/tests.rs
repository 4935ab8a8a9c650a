//! Tests of external-command arms.
