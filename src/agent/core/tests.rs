//! Unit tests of the agent core in virtual time.
