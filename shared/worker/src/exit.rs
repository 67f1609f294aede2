//! Human explanations of well-known exit codes (after Prefect's `infrastructure_exit_codes`).

/// A short explanation of `code` (negative: killed by signal `-code`), if it is a known one.
#[must_use]
pub fn explain(code: i32) -> Option<&'static str> {
    Some(match code {
        1 => "The process failed with a general error; check its logs.",
        2 => "The shell reported a misuse of a builtin or a syntax error.",
        125 => "The container could not be run.",
        126 => "The command was found but is not executable (check its permissions).",
        127 => "The command was not found (check the `command` job variable and PATH).",
        137 | -9 => "The process was killed (SIGKILL), often for running out of memory.",
        143 | -15 => "The process was terminated (SIGTERM).",
        247 => "The process ran out of memory.",
        _ => return None,
    })
}

/// `Flow run process exited with code N.` plus the explanation when there is one.
#[must_use]
pub fn exit_message(code: i32) -> String {
    match explain(code) {
        Some(why) => format!("Flow run process exited with code {code}. {why}"),
        None => format!("Flow run process exited with code {code}."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_codes() {
        assert!(exit_message(127).contains("not found"));
        assert_eq!(exit_message(3), "Flow run process exited with code 3.");
        assert!(explain(-15).is_some());
    }
}
