//! Name rules (Prefect's `src/prefect/types/names.py`) and generated run names.

use rand::seq::IndexedRandom;

/// Why a name was refused. The message names the rule so a client can fix its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name must not be empty")]
    Empty,
    #[error("name {0:?} must not contain any of / % & > <")]
    ForbiddenCharacter(String),
    #[error(
        "variable name {0:?} may only contain lowercase letters, numbers, dashes and underscores"
    )]
    BadVariableName(String),
    #[error("name {name:?} is longer than {max} characters")]
    TooLong { name: String, max: usize },
}

/// Names of pools, queues, flows and deployments may not be blank (after stripping quotes and
/// spaces) and may not contain `/ % & > <`, because they appear in URL paths.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name
        .trim_matches(|c: char| c == '\'' || c == '"' || c.is_whitespace())
        .is_empty()
    {
        return Err(NameError::Empty);
    }
    if name.contains(['/', '%', '&', '>', '<']) {
        return Err(NameError::ForbiddenCharacter(name.to_owned()));
    }
    Ok(())
}

/// Variable names: lowercase letters, digits, `-` and `_`, at most 255 characters.
pub fn validate_variable_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > 255 {
        return Err(NameError::TooLong {
            name: name.to_owned(),
            max: 255,
        });
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(NameError::BadVariableName(name.to_owned()));
    }
    Ok(())
}

const ADJECTIVES: &[&str] = &[
    "amber", "ancient", "bold", "brave", "bright", "calm", "clever", "cobalt", "cosmic", "crimson",
    "curious", "dapper", "daring", "eager", "electric", "emerald", "fancy", "fearless", "gentle",
    "glossy", "golden", "graceful", "hidden", "honest", "humble", "icy", "jolly", "keen", "lively",
    "lucky", "magnetic", "mellow", "merry", "mighty", "modest", "nimble", "noble", "olive",
    "patient", "polite", "proud", "quick", "quiet", "rapid", "rustic", "sandy", "scarlet", "shiny",
    "silver", "smart", "snowy", "steady", "stellar", "sunny", "swift", "tactful", "tidy",
    "tranquil", "upbeat", "vivid", "warm", "wise", "witty", "zealous",
];

const ANIMALS: &[&str] = &[
    "albatross",
    "alpaca",
    "badger",
    "beaver",
    "bison",
    "bobcat",
    "camel",
    "caracal",
    "cheetah",
    "condor",
    "corgi",
    "coyote",
    "crane",
    "dingo",
    "dolphin",
    "eagle",
    "falcon",
    "ferret",
    "finch",
    "gazelle",
    "gecko",
    "gibbon",
    "heron",
    "ibis",
    "impala",
    "jackal",
    "jaguar",
    "kestrel",
    "koala",
    "lemur",
    "leopard",
    "llama",
    "lynx",
    "magpie",
    "manatee",
    "marmot",
    "mongoose",
    "moose",
    "narwhal",
    "ocelot",
    "okapi",
    "otter",
    "owl",
    "panda",
    "pelican",
    "penguin",
    "puffin",
    "quail",
    "raccoon",
    "raven",
    "salamander",
    "seal",
    "sparrow",
    "swan",
    "tapir",
    "tiger",
    "toucan",
    "turtle",
    "vulture",
    "walrus",
    "wombat",
    "yak",
    "zebra",
];

/// A random two-word slug such as `gentle-otter`, the shape of Prefect's generated run names.
pub fn random_run_name() -> String {
    let mut rng = rand::rng();
    let adjective = ADJECTIVES.choose(&mut rng).copied().unwrap_or("quiet");
    let animal = ANIMALS.choose(&mut rng).copied().unwrap_or("otter");
    format!("{adjective}-{animal}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prefect_rules() {
        for ok in ["pool", "my pool", "a.b-c_d", "ünïcode"] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "  ", "\"\"", "a/b", "a%b", "a&b", "a>b", "a<b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert!(validate_variable_name("my_var-1").is_ok());
        assert!(validate_variable_name("MyVar").is_err());
        assert!(validate_variable_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn run_names_are_two_word_slugs() {
        let name = random_run_name();
        assert_eq!(name.split('-').count(), 2, "{name}");
    }
}
