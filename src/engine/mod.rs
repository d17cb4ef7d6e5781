//! Traffic engine.
