//! Model name -> encoding name, the same answers as official tiktoken 0.14's
//! `encoding_name_for_model`. We own this table on purpose: tiktoken-rs's differs (it knows `o4`,
//! `codex-mini`, `gpt-5.`), and the contract is to agree with the Python library users compare to.

use super::Encoding;

/// Exact model names (tiktoken `MODEL_TO_ENCODING`).
pub const MODEL_TO_ENCODING: &[(&str, Encoding)] = &[
    // reasoning
    ("o1", Encoding::O200kBase),
    ("o3", Encoding::O200kBase),
    ("o4-mini", Encoding::O200kBase),
    // chat
    ("gpt-5", Encoding::O200kBase),
    ("gpt-4.1", Encoding::O200kBase),
    ("gpt-4o", Encoding::O200kBase),
    ("gpt-4", Encoding::Cl100kBase),
    ("gpt-3.5-turbo", Encoding::Cl100kBase),
    ("gpt-3.5", Encoding::Cl100kBase),
    ("gpt-35-turbo", Encoding::Cl100kBase),
    // base
    ("davinci-002", Encoding::Cl100kBase),
    ("babbage-002", Encoding::Cl100kBase),
    // embeddings
    ("text-embedding-ada-002", Encoding::Cl100kBase),
    ("text-embedding-3-small", Encoding::Cl100kBase),
    ("text-embedding-3-large", Encoding::Cl100kBase),
    // text (deprecated)
    ("text-davinci-003", Encoding::P50kBase),
    ("text-davinci-002", Encoding::P50kBase),
    ("text-davinci-001", Encoding::R50kBase),
    ("text-curie-001", Encoding::R50kBase),
    ("text-babbage-001", Encoding::R50kBase),
    ("text-ada-001", Encoding::R50kBase),
    ("davinci", Encoding::R50kBase),
    ("curie", Encoding::R50kBase),
    ("babbage", Encoding::R50kBase),
    ("ada", Encoding::R50kBase),
    // code (deprecated)
    ("code-davinci-002", Encoding::P50kBase),
    ("code-davinci-001", Encoding::P50kBase),
    ("code-cushman-002", Encoding::P50kBase),
    ("code-cushman-001", Encoding::P50kBase),
    ("davinci-codex", Encoding::P50kBase),
    ("cushman-codex", Encoding::P50kBase),
    // edit (deprecated)
    ("text-davinci-edit-001", Encoding::P50kEdit),
    ("code-davinci-edit-001", Encoding::P50kEdit),
    // old embeddings (deprecated)
    ("text-similarity-davinci-001", Encoding::R50kBase),
    ("text-similarity-curie-001", Encoding::R50kBase),
    ("text-similarity-babbage-001", Encoding::R50kBase),
    ("text-similarity-ada-001", Encoding::R50kBase),
    ("text-search-davinci-doc-001", Encoding::R50kBase),
    ("text-search-curie-doc-001", Encoding::R50kBase),
    ("text-search-babbage-doc-001", Encoding::R50kBase),
    ("text-search-ada-doc-001", Encoding::R50kBase),
    ("code-search-babbage-code-001", Encoding::R50kBase),
    ("code-search-ada-code-001", Encoding::R50kBase),
    // open source
    ("gpt2", Encoding::Gpt2),
    ("gpt-2", Encoding::Gpt2),
];

/// Prefixes, tried in this order after the exact table (tiktoken `MODEL_PREFIX_TO_ENCODING`;
/// order matters: `ft:gpt-4o` must win over `ft:gpt-4`).
pub const MODEL_PREFIX_TO_ENCODING: &[(&str, Encoding)] = &[
    ("o1-", Encoding::O200kBase),
    ("o3-", Encoding::O200kBase),
    ("o4-mini-", Encoding::O200kBase),
    // chat
    ("gpt-5", Encoding::O200kBase),
    ("gpt-4.5-", Encoding::O200kBase),
    ("gpt-4.1-", Encoding::O200kBase),
    ("chatgpt-4o-", Encoding::O200kBase),
    ("gpt-4o-", Encoding::O200kBase),
    ("gpt-4-", Encoding::Cl100kBase),
    ("gpt-3.5-turbo-", Encoding::Cl100kBase),
    ("gpt-35-turbo-", Encoding::Cl100kBase),
    ("gpt-oss-", Encoding::O200kHarmony),
    // fine-tuned
    ("ft:gpt-4o", Encoding::O200kBase),
    ("ft:gpt-4", Encoding::Cl100kBase),
    ("ft:gpt-3.5-turbo", Encoding::Cl100kBase),
    ("ft:davinci-002", Encoding::Cl100kBase),
    ("ft:babbage-002", Encoding::Cl100kBase),
];

/// The encoding official tiktoken uses for `model`, or `None` where tiktoken raises `KeyError`.
pub fn encoding_for_model(model: &str) -> Option<Encoding> {
    MODEL_TO_ENCODING
        .iter()
        .find(|(name, _)| *name == model)
        .or_else(|| {
            MODEL_PREFIX_TO_ENCODING
                .iter()
                .find(|(prefix, _)| model.starts_with(prefix))
        })
        .map(|&(_, encoding)| encoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_win_over_prefixes() {
        assert_eq!(encoding_for_model("gpt-4"), Some(Encoding::Cl100kBase));
        assert_eq!(encoding_for_model("gpt-4o"), Some(Encoding::O200kBase));
        assert_eq!(encoding_for_model("gpt-4-0613"), Some(Encoding::Cl100kBase));
        assert_eq!(
            encoding_for_model("gpt-4o-2024-05-13"),
            Some(Encoding::O200kBase)
        );
    }

    #[test]
    fn prefixes_follow_tiktoken_order() {
        assert_eq!(
            encoding_for_model("ft:gpt-4o-mini:org::id"),
            Some(Encoding::O200kBase)
        );
        assert_eq!(
            encoding_for_model("ft:gpt-4-0613:org::id"),
            Some(Encoding::Cl100kBase)
        );
        assert_eq!(
            encoding_for_model("gpt-oss-120b"),
            Some(Encoding::O200kHarmony)
        );
        assert_eq!(encoding_for_model("gpt-5-mini"), Some(Encoding::O200kBase));
        assert_eq!(encoding_for_model("gpt-5.1"), Some(Encoding::O200kBase));
    }

    #[test]
    fn unknown_models_have_no_encoding() {
        for model in [
            "",
            "o4",
            "codex-mini",
            "claude-3-opus",
            "gpt",
            "GPT-4",
            "llama-3",
        ] {
            assert_eq!(encoding_for_model(model), None, "{model}");
        }
    }
}
