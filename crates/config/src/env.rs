//! `${VAR}` and `${VAR:-default}` in a configuration file: values that belong to the machine
//! (a node's IP, an agent's host, a path) without a templating tool. Substituted in the text
//! before it is read as YAML, so a reference may stand wherever a value can; `$$` is a
//! literal `$`. A variable that is not set and has no default is an error at its place.

use crate::problems::Problem;

/// The text with every reference replaced; the problems (file order) otherwise.
pub fn substitute(
    text: &str,
    var: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<Problem>> {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        substitute_line(line, index + 1, &var, &mut out, &mut problems);
    }
    match problems.is_empty() {
        true => Ok(out),
        false => Err(problems),
    }
}

fn substitute_line(
    line: &str,
    number: usize,
    var: &impl Fn(&str) -> Option<String>,
    out: &mut String,
    problems: &mut Vec<Problem>,
) {
    let mut rest = line;
    let mut column = 1;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        column += rest[..at].chars().count();
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            (rest, column) = (tail, column + 2);
            continue;
        }
        let Some(reference) = after.strip_prefix('{').and_then(|r| r.split_once('}')) else {
            out.push('$');
            (rest, column) = (after, column + 1);
            continue;
        };
        let (inside, tail) = reference;
        let problem = |message: String| Problem {
            line: number as u64,
            column: column as u64,
            message,
        };
        let (name, default) = match inside.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inside, None),
        };
        if !is_name(name) {
            problems.push(problem(format!(
                "`${{{inside}}}`: a variable name is letters, digits and `_`, not starting with a digit"
            )));
        } else {
            match (
                var(name).filter(|v| default.is_none() || !v.is_empty()),
                default,
            ) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => problems.push(problem(format!(
                    "environment variable `{name}` is not set (a default: `${{{name}:-VALUE}}`)"
                ))),
            }
        }
        column += 3 + inside.chars().count();
        rest = tail;
    }
    out.push_str(rest);
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "NODE_IP" => Some("10.1.2.3".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn references_are_replaced_and_defaults_used() {
        let text = "address: ${NODE_IP}:443\nagent: ${AGENT:-127.0.0.1:8125}\nempty: '${EMPTY}' '${EMPTY:-x}'\nhash: $argon2id$v=19 and $${NOT}\n";
        assert_eq!(
            substitute(text, env).unwrap(),
            "address: 10.1.2.3:443\nagent: 127.0.0.1:8125\nempty: '' 'x'\nhash: $argon2id$v=19 and ${NOT}\n"
        );
    }

    #[test]
    fn an_unset_variable_is_named_at_its_place() {
        let problems = substitute("a: 1\nb: x ${MISSING} ${9BAD}\n", env).unwrap_err();
        assert_eq!((problems[0].line, problems[0].column), (2, 6));
        assert!(
            problems[0].message.contains("`MISSING` is not set"),
            "{}",
            problems[0].message
        );
        assert_eq!((problems[1].line, problems[1].column), (2, 17));
        assert!(problems[1].message.contains("variable name"));
    }
}
