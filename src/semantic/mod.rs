//! The semantic cache (issue 15), built in steps. This step is its verifier: the pure
//! check that a stored answer's question and a new question agree on what embeddings
//! gloss over. The embedder, the index and the lookup tier come next; nothing on the
//! request path calls this module yet.

pub mod verifier;

pub use verifier::{Reason, verify};
