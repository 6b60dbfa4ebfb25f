//! syncore
