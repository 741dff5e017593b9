//! The follower's tests against a simulated Zeek: one per failure seen in
//! the field, and a model-based test of every operation sequence.

mod model;
mod scenarios;
mod sim;
