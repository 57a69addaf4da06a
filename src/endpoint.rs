//! The four cacheable routes. The endpoint is part of every cache key and every
//! analytics row, so it has one canonical spelling here.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    /// OpenAI's Responses API (`client.responses.create`, the Agents SDK).
    Responses,
}

impl Endpoint {
    pub const ALL: [Self; 4] = [
        Self::ChatCompletions,
        Self::Completions,
        Self::Embeddings,
        Self::Responses,
    ];

    /// Position in [`Endpoint::ALL`] (for per-route tables).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The cacheable endpoint a `POST` to `path` reaches.
    pub fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.path() == path)
    }

    /// The route as clients call it.
    pub fn path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/v1/chat/completions",
            Self::Completions => "/v1/completions",
            Self::Embeddings => "/v1/embeddings",
            Self::Responses => "/v1/responses",
        }
    }

    /// The path below the relay's `/v1` base URL.
    pub fn relay_suffix(self) -> &'static str {
        &self.path()[3..]
    }

    /// Label for metrics and analytics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat.completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
            Self::Responses => "responses",
        }
    }

    pub fn supports_stream(self) -> bool {
        !matches!(self, Self::Embeddings)
    }

    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == label)
    }
}
