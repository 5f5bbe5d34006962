//! Credentials (kind `SECRET`): provider key formats after gitleaks' rules, JWTs, PEM private
//! keys, passwords in URLs and high-entropy values assigned to secret-named keys.
//!
//! gitleaks' shape: every rule has keywords, one Aho-Corasick pass finds them, and the rules'
//! automaton runs only on windows around the hits, so text without any keyword (most text) costs
//! one prefilter pass.

use std::borrow::Cow;

use regex_automata::meta::{self, Regex};
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};

use super::keywords::Substrings;
use super::pii::{Finding, SECRET};
use super::validate::entropy;

/// How a rule's match becomes a finding.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Refine {
    /// The whole match is the secret (a provider key format).
    Whole,
    /// `key = value`: the value, if it is not a placeholder and has this much entropy (bits per
    /// character).
    Assigned { min_entropy: f64, min_len: usize },
    /// `scheme://user:password@host`: the password.
    UrlPassword,
    /// `Authorization: Bearer <token>`, `curl -u user:password`: what follows the marker.
    After { marker: u8, min_entropy: f64 },
    /// A PEM header: the block up to its END line.
    PemBlock,
}

struct SecretRule {
    detail: &'static str,
    /// Lowercase; any of them near the match (the rule runs only on windows around them).
    keywords: &'static [&'static str],
    pattern: &'static str,
    refine: Refine,
    score: f64,
}

const fn provider(
    detail: &'static str,
    keywords: &'static [&'static str],
    pattern: &'static str,
) -> SecretRule {
    SecretRule {
        detail,
        keywords,
        pattern,
        refine: Refine::Whole,
        score: 1.0,
    }
}

/// Provider formats: gitleaks' most common rules (its `config/gitleaks.toml`), tightened to
/// the documented prefixes.
const RULES: &[SecretRule] = &[
    provider(
        "aws_access_key_id",
        &["akia", "asia", "abia", "acca", "a3t"],
        r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}",
    ),
    provider("github_pat", &["ghp_"], r"ghp_[0-9A-Za-z]{36}"),
    provider("github_oauth", &["gho_"], r"gho_[0-9A-Za-z]{36}"),
    provider(
        "github_app_token",
        &["ghu_", "ghs_"],
        r"(?:ghu|ghs)_[0-9A-Za-z]{36}",
    ),
    provider("github_refresh_token", &["ghr_"], r"ghr_[0-9A-Za-z]{36}"),
    provider(
        "github_fine_grained_pat",
        &["github_pat_"],
        r"github_pat_[0-9A-Za-z_]{82}",
    ),
    provider("gitlab_pat", &["glpat-"], r"glpat-[0-9A-Za-z_-]{20}"),
    provider(
        "slack_token",
        &["xox"],
        r"xox[abeoprs]-(?:[0-9]{10,13}-){1,2}[0-9A-Za-z-]{10,48}",
    ),
    provider(
        "slack_webhook_url",
        &["hooks.slack.com"],
        r"https?://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9+/]{43,56}",
    ),
    provider(
        "stripe_key",
        &["sk_", "rk_"],
        r"(?:sk|rk)_(?:test|live|prod)_[0-9A-Za-z]{10,99}",
    ),
    provider(
        "anthropic_api_key",
        &["sk-ant-"],
        r"sk-ant-(?:api03|admin01)-[A-Za-z0-9_-]{80,110}",
    ),
    provider(
        "openai_api_key",
        &["sk-"],
        r"sk-(?:(?:proj|svcacct|admin)-)?[A-Za-z0-9_-]{20,74}T3BlbkFJ[A-Za-z0-9_-]{20,74}|sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,200}|sk-[A-Za-z0-9]{48}",
    ),
    provider("gcp_api_key", &["aiza"], r"AIza[0-9A-Za-z_-]{35}"),
    provider("huggingface_token", &["hf_"], r"hf_[A-Za-z0-9]{34}"),
    provider("npm_token", &["npm_"], r"npm_[A-Za-z0-9]{36}"),
    provider(
        "pypi_token",
        &["pypi-ageichlwas5vcmc"],
        r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}",
    ),
    provider(
        "sendgrid_api_key",
        &["sg."],
        r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",
    ),
    provider("mailchimp_api_key", &["-us"], r"[0-9a-f]{32}-us[0-9]{1,2}"),
    provider(
        "shopify_token",
        &["shpat_", "shpca_", "shppa_", "shpss_"],
        r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}",
    ),
    provider("digitalocean_token", &["_v1_"], r"do[opr]_v1_[a-f0-9]{64}"),
    provider("doppler_token", &["dp.pt."], r"dp\.pt\.[A-Za-z0-9]{43}"),
    provider(
        "databricks_token",
        &["dapi"],
        r"dapi[a-f0-9]{32}(?:-[0-9])?",
    ),
    provider("pulumi_token", &["pul-"], r"pul-[a-f0-9]{40}"),
    provider("linear_api_key", &["lin_api_"], r"lin_api_[A-Za-z0-9]{40}"),
    provider(
        "square_token",
        &["sq0atp-", "sq0csp-", "eaaa"],
        r"sq0(?:atp|csp)-[0-9A-Za-z_-]{22,43}|EAAA[A-Za-z0-9_-]{60}",
    ),
    provider(
        "telegram_bot_token",
        &[":aa"],
        r"[0-9]{8,10}:AA[0-9A-Za-z_-]{33}",
    ),
    provider(
        "age_secret_key",
        &["age-secret-key-1"],
        r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}",
    ),
    provider(
        "grafana_token",
        &["glc_", "glsa_"],
        r"glc_[A-Za-z0-9+/]{32,400}={0,2}|glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}",
    ),
    provider(
        "vault_token",
        &["hvs.", "hvb."],
        r"hv[sb]\.[A-Za-z0-9_-]{90,120}",
    ),
    provider(
        "postman_api_key",
        &["pmak-"],
        r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}",
    ),
    provider("groq_api_key", &["gsk_"], r"gsk_[A-Za-z0-9]{52}"),
    provider("replicate_api_token", &["r8_"], r"r8_[A-Za-z0-9]{37}"),
    provider("xai_api_key", &["xai-"], r"xai-[A-Za-z0-9]{80}"),
    provider(
        "notion_token",
        &["ntn_", "secret_"],
        r"ntn_[0-9]{11}[A-Za-z0-9]{35}|secret_[A-Za-z0-9]{43}",
    ),
    provider(
        "atlassian_api_token",
        &["atatt3"],
        r"ATATT3[A-Za-z0-9_=-]{186}",
    ),
    provider(
        "azure_ad_client_secret",
        &["q~"],
        r"[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}",
    ),
    provider(
        "azure_storage_key",
        &["accountkey="],
        r"AccountKey=[A-Za-z0-9+/]{86}==",
    ),
    provider(
        "sentry_dsn",
        &["sentry.io"],
        r"https://[a-f0-9]{32}@o?[0-9]*\.?ingest\.(?:[a-z]{2}\.)?sentry\.io",
    ),
    provider(
        "jwt",
        &["eyj"],
        r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
    ),
    SecretRule {
        detail: "private_key",
        keywords: &["private key-----"],
        pattern: r"-----BEGIN[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----",
        refine: Refine::PemBlock,
        score: 1.0,
    },
    SecretRule {
        detail: "url_password",
        keywords: &["://"],
        // User: no `:`, `/`, `@`; password: any visible ASCII but `/`, `@` (people write `#`, `^`
        // unescaped), then the host.
        pattern: r"[A-Za-z][A-Za-z0-9+.-]{1,15}://[!-.0-9;-?A-~]{1,64}:[!-.0-?A-~]{1,128}@[A-Za-z0-9.-]{1,253}",
        refine: Refine::UrlPassword,
        score: 0.95,
    },
    SecretRule {
        detail: "bearer_token",
        keywords: &["bearer"],
        pattern: r"(?i:bearer)[ ]{1,3}[A-Za-z0-9._~+/-]{16,1024}=*",
        refine: Refine::After {
            marker: b' ',
            min_entropy: 3.0,
        },
        score: 0.9,
    },
    SecretRule {
        detail: "basic_auth",
        keywords: &["--user", "-u "],
        pattern: r#"(?:-u|--user)[ =]["']?[A-Za-z0-9._@+-]{1,64}:[A-Za-z0-9!#$%&*+./:;<>?@^_~=-]{4,128}"#,
        refine: Refine::After {
            marker: b':',
            min_entropy: 1.5,
        },
        score: 0.9,
    },
    SecretRule {
        detail: "password_assignment",
        keywords: &["passw", "pwd", "passphrase"],
        pattern: r#"(?i:password|passwd|passphrase|pwd)[A-Za-z0-9_.-]{0,12}["']?[ \t]{0,3}(?::=|=>|=|:)[ \t]{0,3}["']?[A-Za-z0-9!#$%&*+./:<>?@^_~=|-]{6,128}"#,
        refine: Refine::Assigned {
            min_entropy: 2.0,
            min_len: 6,
        },
        score: 0.85,
    },
    SecretRule {
        detail: "secret_assignment",
        keywords: &["key", "secret", "token", "credential", "auth"],
        pattern: r#"(?i:api[_.-]?key|apikey|api[_.-]?secret|secret[_.-]?key|client[_.-]?secret|access[_.-]?key(?:[_.-]?id)?|secret[_.-]?access[_.-]?key|auth[_.-]?token|access[_.-]?token|refresh[_.-]?token|private[_.-]?key|secret|token|credentials?)[A-Za-z0-9_.-]{0,12}["']?[ \t]{0,3}(?::=|=>|=|:)[ \t]{0,3}["']?[A-Za-z0-9+/_.~=-]{12,512}"#,
        refine: Refine::Assigned {
            min_entropy: 3.2,
            min_len: 12,
        },
        score: 0.8,
    },
];

/// How far before a keyword a match may start (scheme before `://`, a key's prefix, a Telegram
/// bot id), and after it end (a long JWT); windows are merged when they overlap.
const BEFORE: usize = 96;
const AFTER: usize = 1024;

/// How far after an assignment rule's keyword its operator may be: the rest of the longest
/// key name (`_access_key` after `secret`), 12 suffix characters, with room to spare.
const OPERATOR_WITHIN: usize = 48;

/// What the assignment rules need after their keyword: the rest of a name, an optional quote,
/// at most 3 blanks, then `=` or `:` (`=`, `:`, `:=`, `=>`).
fn assignment_near(bytes: &[u8], at: usize) -> bool {
    let limit = (at + OPERATOR_WITHIN).min(bytes.len());
    let mut i = at;
    while i < limit && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'.' | b'-'))
    {
        i += 1;
    }
    if matches!(bytes.get(i), Some(b'"' | b'\'')) {
        i += 1;
    }
    let mut blanks = 0;
    while blanks < 3 && matches!(bytes.get(i), Some(b' ' | b'\t')) {
        i += 1;
        blanks += 1;
    }
    matches!(bytes.get(i), Some(b'=' | b':'))
}

/// The bytes a match of `hir` can start with: the first bytes of its prefix literals, or
/// every byte when they are not a finite set (or one may be empty).
fn first_bytes_of(hir: &regex_syntax::hir::Hir) -> [bool; 256] {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let prefixes = Extractor::new().kind(ExtractKind::Prefix).extract(hir);
    let mut table = [false; 256];
    match prefixes.literals() {
        Some(literals)
            if literals
                .iter()
                .all(|literal| !literal.as_bytes().is_empty()) =>
        {
            for literal in literals {
                table[usize::from(literal.as_bytes()[0])] = true;
            }
        }
        _ => table = [true; 256],
    }
    table
}

/// How far before its keyword an assignment's key name may start (`secret_access_` of
/// `secret_access_key`).
const KEY_NAME_BEFORE: usize = 16;

/// The largest PEM block masked as one (an RSA 8192 key is about 6.5 KB).
const MAX_PEM_BYTES: usize = 16 * 1024;

/// One small automaton per rule, run only on the windows around that rule's keywords (the
/// gitleaks shape): a combined automaton of every rule's counted repetitions would blow up on
/// base64 and hex text, where keywords occur by chance.
#[derive(Debug)]
pub struct SecretRules {
    keywords: Substrings,
    regexes: Vec<Regex>,
    /// Each rule's longest match (`usize::MAX` when unbounded).
    longest: Vec<usize>,
    /// Each rule's possible first bytes (from its prefix literals; all when unknown).
    first_bytes: Vec<[bool; 256]>,
}

impl SecretRules {
    pub fn new() -> Result<SecretRules, String> {
        let keywords = Substrings::new(RULES.iter().map(|rule| rule.keywords))?;
        let regexes = RULES
            .iter()
            .map(|rule| {
                Regex::builder()
                    .syntax(syntax::Config::new().unicode(false).utf8(false))
                    .configure(meta::Config::new().utf8_empty(false))
                    .build(rule.pattern)
                    .map_err(|e| format!("secret rule {}: {e}", rule.detail))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let syntax = syntax::Config::new().unicode(false).utf8(false);
        let mut longest = Vec::with_capacity(RULES.len());
        let mut first_bytes = Vec::with_capacity(RULES.len());
        for rule in RULES {
            let hir = syntax::parse_with(rule.pattern, &syntax)
                .map_err(|e| format!("secret rule {}: {e}", rule.detail))?;
            longest.push(hir.properties().maximum_len().unwrap_or(usize::MAX));
            first_bytes.push(first_bytes_of(&hir));
        }
        Ok(SecretRules {
            keywords,
            regexes,
            longest,
            first_bytes,
        })
    }

    /// An assignment rule's match around the keyword at `hit`: its key name starts at most
    /// `KEY_NAME_BEFORE` bytes before the keyword, so the rule runs anchored at each of those
    /// positions (the first that matches wins, as the leftmost match would) instead of
    /// unanchored over a window: its automaton (case-insensitive names, a value of up to 512
    /// characters) is slow to run over every byte.
    fn assigned(
        &self,
        text: &str,
        rule: usize,
        hit: usize,
        resume: usize,
    ) -> Option<(usize, usize)> {
        let end = hit.saturating_add(self.longest[rule]).min(text.len());
        let first = &self.first_bytes[rule];
        let bytes = text.as_bytes();
        (hit.saturating_sub(KEY_NAME_BEFORE).max(resume)..=hit).find_map(|start| {
            // A key name starts at the keyword or at the start of a word (`my_api_key`,
            // `client_secret`; not inside `print`), with a byte the rule can start with.
            let word_start = start == 0 || !bytes[start - 1].is_ascii_alphabetic();
            if !(start == hit || word_start && first[usize::from(bytes[start])]) {
                return None;
            }
            let input = Input::new(text).range(start..end).anchored(Anchored::Yes);
            self.regexes[rule]
                .search(&input)
                .map(|found| (found.start(), found.end()))
        })
    }

    /// The secrets in `text`, where a keyword makes one possible.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let bytes = text.as_bytes();
        let mut found = Vec::new();
        let mut windows: Vec<Vec<(usize, usize)>> = vec![Vec::new(); RULES.len()];
        // Assignment rules: the keyword hits, where their key names are (see `assigned`).
        let mut anchors: Vec<Vec<usize>> = vec![Vec::new(); RULES.len()];
        for (hit_start, hit_end, rules) in self.keywords.hits(text) {
            let assignment = assignment_near(bytes, hit_end);
            for &rule in rules {
                // `key = value` rules: no operator after the name, no window (most "token",
                // "auth", "key" in prose and code are not assignments).
                if matches!(RULES[rule].refine, Refine::Assigned { .. }) {
                    if assignment {
                        anchors[rule].push(hit_start);
                    }
                    continue;
                }
                // A match holds its keyword, so it lies within its longest length of it.
                let longest = self.longest[rule];
                let start = hit_start
                    .saturating_sub(BEFORE)
                    .max((hit_start + 1).saturating_sub(longest));
                let end = (hit_end + AFTER)
                    .min(hit_start.saturating_add(longest))
                    .min(bytes.len());
                let rule_windows = &mut windows[rule];
                match rule_windows.last_mut() {
                    Some(previous) if start <= previous.1 => previous.1 = previous.1.max(end),
                    _ => rule_windows.push((start, end)),
                }
            }
        }
        for (index, rule_windows) in windows.iter().enumerate() {
            let rule = &RULES[index];
            let mut emit = |start: usize, end: usize| {
                let Some((s, e)) = refine(text, rule.refine, start, end) else {
                    return;
                };
                if !bounded(bytes, s, e, rule.refine) {
                    return;
                }
                found.push((
                    u8::from(!matches!(rule.refine, Refine::Whole | Refine::PemBlock)),
                    Finding {
                        kind: Cow::Borrowed(SECRET),
                        detail: Cow::Borrowed(rule.detail),
                        start: s,
                        end: e,
                        score: rule.score,
                    },
                ));
            };
            let mut resume = 0;
            for &hit in &anchors[index] {
                if let Some((start, end)) = self.assigned(text, index, hit, resume) {
                    resume = end;
                    emit(start, end);
                }
            }
            for &(start, end) in rule_windows {
                let start = start.max(resume);
                if start >= end {
                    continue;
                }
                // The window is a range of the whole text: the automaton sees what lies around.
                let input = Input::new(text).range(start..end);
                for candidate in self.regexes[index].find_iter(input) {
                    resume = resume.max(candidate.end());
                    emit(candidate.start(), candidate.end());
                }
            }
        }
        // On overlap the earliest start stays, a provider format before a contextual rule.
        found.sort_by_key(|(contextual, f)| (f.start, *contextual, usize::MAX - f.end));
        let found: Vec<Finding> = found.into_iter().map(|(_, f)| f).collect();
        let mut kept: Vec<Finding> = Vec::with_capacity(found.len());
        for finding in found {
            match kept.last() {
                Some(last) if finding.start < last.end => {}
                _ => kept.push(finding),
            }
        }
        kept
    }
}

/// Provider keys must not be glued to more token characters (a longer random string that
/// merely contains `AKIA...` is something else).
fn bounded(bytes: &[u8], start: usize, end: usize, refine: Refine) -> bool {
    if refine != Refine::Whole {
        return true;
    }
    let glued = |b: u8| b.is_ascii_alphanumeric();
    !(bytes.get(end).copied().is_some_and(glued) || start > 0 && glued(bytes[start - 1]))
}

fn refine(text: &str, refine: Refine, start: usize, end: usize) -> Option<(usize, usize)> {
    let matched = &text[start..end];
    match refine {
        Refine::Whole => Some((start, end)),
        Refine::Assigned {
            min_entropy,
            min_len,
        } => {
            // The value starts after the assignment operator and an optional quote.
            let operator = matched.find([':', '=', '>'])?;
            let rest = &matched[operator..];
            let skip = rest
                .find(|c: char| !matches!(c, ':' | '=' | '>' | ' ' | '\t' | '"' | '\''))
                .unwrap_or(rest.len());
            let value_start = start + operator + skip;
            let value = &text[value_start..end];
            let value = value.trim_end_matches(['.', ',']);
            // A call (`getpass.getpass()`) or an attribute (`settings.KEY`) is code, not a value.
            let call = text.as_bytes().get(value_start + value.len()) == Some(&b'(');
            let attribute = value.contains('.')
                && value.split('.').all(|part| {
                    !part.is_empty()
                        && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                        && !part.as_bytes()[0].is_ascii_digit()
                });
            (!call
                && !attribute
                && value.len() >= min_len
                && !placeholder(value)
                && entropy(value) >= min_entropy
                && (min_len < 12 || has_mixed_classes(value)))
            .then_some((value_start, value_start + value.len()))
        }
        Refine::UrlPassword => {
            let scheme_end = matched.find("://")? + 3;
            let at = matched.rfind('@')?;
            let colon = matched[scheme_end..at].find(':')? + scheme_end + 1;
            let password = &matched[colon..at];
            (!password.is_empty() && !placeholder(password)).then_some((start + colon, start + at))
        }
        Refine::After {
            marker,
            min_entropy,
        } => {
            let at = matched.bytes().position(|b| b == marker)? + 1;
            let value = matched[at..].trim_start_matches([' ', '"', '\'']);
            let value_start = end - value.len();
            (!placeholder(value) && entropy(value) >= min_entropy).then_some((value_start, end))
        }
        Refine::PemBlock => {
            let limit = (end + MAX_PEM_BYTES).min(text.len());
            let limit = floor_boundary(text, limit);
            let block_end = text[end..limit]
                .find("-----END")
                .and_then(|at| {
                    let footer = end + at + 8;
                    text[footer..limit]
                        .find("-----")
                        .map(|close| footer + close + 5)
                })
                // No END line (a truncated key): everything after the header is masked.
                .unwrap_or(limit);
            Some((start, block_end))
        }
    }
}

fn floor_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// A random token mixes letters and digits (or cases); words and identifiers mostly do not.
fn has_mixed_classes(value: &str) -> bool {
    let digits = value.bytes().any(|b| b.is_ascii_digit());
    let lower = value.bytes().any(|b| b.is_ascii_lowercase());
    let upper = value.bytes().any(|b| b.is_ascii_uppercase());
    digits && (lower || upper) || lower && upper && value.len() >= 20
}

/// Values that stand for a secret without being one: variables, templates, examples, masks.
fn placeholder(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    value.starts_with(['$', '{', '<', '%', '(', '[', '*'])
        || value.contains('(')
        || value.contains("${")
        || value.contains("{{")
        || lower.contains("xxxx")
        || lower.contains("****")
        || lower.contains("...")
        || lower.contains("your")
        || lower.contains("example")
        || lower.contains("redacted")
        || lower.contains("placeholder")
        || lower.contains("changeme")
        || lower.starts_with("os.")
        || lower.starts_with("process.env")
        || lower.starts_with("env.")
        || lower.starts_with("settings.")
        || lower.starts_with("config.")
        || lower.starts_with("self.")
        || matches!(
            lower.as_str(),
            "null" | "none" | "true" | "false" | "password" | "passwd" | "secret" | "undefined"
                | "required" | "optional" | "string" | "pass" | "empty" | "nil"
        )
        // SCREAMING_SNAKE names are variables, not values.
        || value.bytes().all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit())
            && value.bytes().any(|b| b == b'_')
}

/// The provider rules' names (the `detail` of their findings).
pub fn rule_names() -> impl Iterator<Item = &'static str> {
    RULES.iter().map(|r| r.detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(text: &str) -> Vec<(&'static str, String)> {
        let rules = SecretRules::new().unwrap();
        rules
            .scan(text)
            .into_iter()
            .map(|f| {
                let Cow::Borrowed(detail) = f.detail else {
                    unreachable!()
                };
                (detail, text[f.start..f.end].to_owned())
            })
            .collect()
    }

    #[test]
    fn first_bytes_come_from_prefix_literals() {
        let syntax = syntax::Config::new().unicode(false).utf8(false);
        let hir = syntax::parse_with(r"(?i:api|token)[0-9]+", &syntax).unwrap();
        let first = first_bytes_of(&hir);
        let allowed: Vec<u8> = (0..=255u8).filter(|&b| first[usize::from(b)]).collect();
        assert_eq!(allowed, b"ATat");
        let hir = syntax::parse_with(r"x?[0-9]+", &syntax).unwrap();
        let first = first_bytes_of(&hir);
        let allowed: Vec<u8> = (0..=255u8).filter(|&b| first[usize::from(b)]).collect();
        assert_eq!(allowed, b"0123456789x");
        // Too many to list: any byte.
        let hir = syntax::parse_with(r"[^a]x", &syntax).unwrap();
        assert!(first_bytes_of(&hir).iter().all(|&b| b));
    }

    #[test]
    fn provider_keys_in_context() {
        let key = "AKIAIOSFODNN7EXAMPLE";
        assert_eq!(
            secrets(&format!("aws_access_key_id = {key}\n")),
            vec![("aws_access_key_id", key.to_owned())]
        );
        let ghp = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
        assert_eq!(
            secrets(&format!(
                "curl -H 'Authorization: token {ghp}' https://api.github.com"
            )),
            vec![("github_pat", ghp.to_owned())]
        );
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(
            secrets(&format!("{{\"jwt\": \"{jwt}\"}}")),
            vec![("jwt", jwt.to_owned())]
        );
    }

    #[test]
    fn assignments_urls_and_pem() {
        assert_eq!(
            secrets("DB_PASSWORD=\"s3cr3t-Pa55\"\n"),
            vec![("password_assignment", "s3cr3t-Pa55".to_owned())]
        );
        assert_eq!(
            secrets("postgres://admin:hunter2x@db.internal:5432/app"),
            vec![("url_password", "hunter2x".to_owned())]
        );
        let pem =
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----";
        assert_eq!(
            secrets(&format!("key:\n{pem}\nmore")),
            vec![("private_key", pem.to_owned())]
        );
    }

    #[test]
    fn placeholders_are_not_secrets() {
        for text in [
            "api_key = os.environ['API_KEY']",
            "password: ${DB_PASSWORD}",
            "token = YOUR_API_TOKEN",
            "the token count is 1234567890123",
            "secret_key = settings.SECRET_KEY",
            "password=changeme",
            "https://user:<password>@host",
        ] {
            assert_eq!(secrets(text), vec![], "{text}");
        }
    }
}
