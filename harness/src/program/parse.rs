//! Reading the text form back: strict for hand-written files, lenient for
//! old corpus files.
//!
//! Both modes read the same grammar (`docs/program-format.md`) line by
//! line. Names written in the file are labels: each result takes the next
//! ordinal of its kind (mmap, fork, GUP call) whether it is named or not,
//! and a label stands for the ordinal of the result it names, so a file
//! whose names skip or reorder numbers still reads, and `pinfuzz fmt`
//! rewrites the names to the ordinals.
//!
//! [`Program::parse_strict`] fails on the first problem: a syntax error, an
//! unknown key, or any broken validity rule of [`super::rules`] (a step
//! using a handle that is not live is an error, not silently dropped), as
//! `FILE:LINE:COL: message` with the line and a caret under the token.
//! [`Program::parse_lenient`] never fails: unknown keys and flags are
//! ignored, lines that do not parse are dropped, and the program is passed
//! through [`Program::fixup`]; every such change is returned as a warning
//! in the same format.

use std::collections::BTreeMap;

use reference::{Foll, GupApi};

use super::diag::{Diagnostic, ParseError, Severity};
use super::text::{
    ACCESSES, ADVICES, MAGIC, MAP_KINDS, PROTS, RELEASES, THP_MODES, VERSION, choices, lookup,
};
use super::{Field, Problem, Repair};
use crate::op::{ChildId, HandleId, Header, MapId, Op, PageRange, Proc, Program, Step};

impl Program {
    /// Read a hand-written program; `file_name` is only used in messages.
    ///
    /// # Errors
    ///
    /// The first syntax error or broken validity rule, as a diagnostic
    /// pointing at the line and column.
    pub fn parse_strict(src: &str, file_name: &str) -> std::result::Result<Program, ParseError> {
        let mut parser = Parser::new(src, file_name, true);
        parser.run().map_err(|e| ParseError(parser.diagnostic(e)))?;
        if let Err(problems) = parser.program.validate() {
            let first = problems.into_iter().next().expect("an error has a problem");
            return Err(ParseError(parser.problem_diagnostic(&first)));
        }
        Ok(parser.program)
    }

    /// Read an old or damaged program as well as possible: never fails,
    /// returns a valid program and what was ignored, dropped or changed.
    pub fn parse_lenient(src: &str, file_name: &str) -> (Program, Vec<Diagnostic>) {
        let mut parser = Parser::new(src, file_name, false);
        if let Err(e) = parser.run() {
            // Lenient mode reports instead of failing everywhere; keep any
            // stray error as a warning all the same.
            let d = parser.diagnostic(e);
            parser.warnings.push(d);
        }
        let repairs = parser.program.fixup_report();
        let mut warnings = std::mem::take(&mut parser.warnings);
        warnings.extend(repairs.iter().map(|r| parser.repair_diagnostic(r)));
        warnings.sort_by_key(|d| (d.line, d.col));
        (parser.program, warnings)
    }
}

/// A place in the file: 0-based line index, 0-based char column, length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    line: usize,
    col: usize,
    len: usize,
}

impl Span {
    /// From the start of `self` to the end of `other` (same line).
    fn to(self, other: Span) -> Span {
        Span {
            line: self.line,
            col: self.col,
            len: (other.col + other.len).saturating_sub(self.col),
        }
    }
}

/// An error at a place, before it becomes a [`Diagnostic`].
#[derive(Debug)]
struct Error {
    span: Span,
    message: String,
}

type Result<T> = std::result::Result<T, Error>;

fn err<T>(span: Span, message: impl Into<String>) -> Result<T> {
    Err(Error {
        span,
        message: message.into(),
    })
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Num(u64),
    Colon,
    Eq,
    LParen,
    RParen,
    Comma,
    LBracket,
    RBracket,
    DotDot,
    Pipe,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Num(n) => format!("`{n}`"),
            Tok::Colon => "`:`".into(),
            Tok::Eq => "`=`".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Comma => "`,`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::DotDot => "`..`".into(),
            Tok::Pipe => "`|`".into(),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    span: Span,
}

/// Split the code part of a step line into tokens.
fn tokenize(code: &str, line: usize) -> Result<Vec<Token>> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let tok = if c.is_whitespace() {
            i += 1;
            continue;
        } else if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '-')
            {
                i += 1;
            }
            Tok::Word(chars[start..i].iter().collect())
        } else if c.is_ascii_digit() {
            let mut n: u64 = 0;
            while i < chars.len() && chars[i].is_ascii_digit() {
                let digit = u64::from(chars[i].to_digit(10).expect("ascii digit"));
                n = n.saturating_mul(10).saturating_add(digit);
                i += 1;
            }
            Tok::Num(n)
        } else if c == '.' && chars.get(i + 1) == Some(&'.') {
            i += 2;
            Tok::DotDot
        } else {
            i += 1;
            match c {
                ':' => Tok::Colon,
                '=' => Tok::Eq,
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                ',' => Tok::Comma,
                '[' => Tok::LBracket,
                ']' => Tok::RBracket,
                '|' => Tok::Pipe,
                _ => {
                    let span = Span {
                        line,
                        col: start,
                        len: 1,
                    };
                    return err(span, format!("unexpected character `{}`", c.escape_debug()));
                }
            }
        };
        tokens.push(Token {
            tok,
            span: Span {
                line,
                col: start,
                len: i - start,
            },
        });
    }
    Ok(tokens)
}

/// A value written as an argument.
#[derive(Clone, Debug)]
enum Value {
    Word(String),
    Num(u64),
    /// `m0[a..b]` or `m0[a]`.
    Range {
        map: String,
        map_span: Span,
        start: u64,
        end: u64,
    },
    /// `a|b|c`.
    Flags(Vec<(String, Span)>),
}

impl Value {
    fn describe(&self) -> &'static str {
        match self {
            Value::Word(_) => "a word",
            Value::Num(_) => "a number",
            Value::Range { .. } => "a page range",
            Value::Flags(_) => "a list of flags",
        }
    }
}

#[derive(Clone, Debug)]
struct Arg {
    key: Option<(String, Span)>,
    value: Value,
    /// The value's span.
    span: Span,
    /// The whole argument, key included.
    full: Span,
}

/// One step line, parsed but not interpreted.
#[derive(Debug)]
struct Call {
    proc: Option<(String, Span)>,
    name: Option<(String, Span)>,
    op: String,
    op_span: Span,
    /// From the op name to the closing parenthesis.
    span: Span,
    args: Vec<Arg>,
}

/// Recursive descent over the tokens of one line.
struct Cursor<'t> {
    tokens: &'t [Token],
    pos: usize,
    /// Where the line ends, for "expected ... at end of line".
    eol: Span,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn peek_at(&self, ahead: usize) -> Option<&Tok> {
        self.tokens.get(self.pos + ahead).map(|t| &t.tok)
    }

    fn here(&self) -> Span {
        self.tokens.get(self.pos).map_or(self.eol, |t| t.span)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: &Tok, what: &str) -> Result<Span> {
        match self.next() {
            Some(t) if &t.tok == want => Ok(t.span),
            Some(t) => err(
                t.span,
                format!("expected {what}, found {}", t.tok.describe()),
            ),
            None => err(self.eol, format!("expected {what} at end of line")),
        }
    }

    fn word(&mut self, what: &str) -> Result<(String, Span)> {
        match self.next() {
            Some(Token {
                tok: Tok::Word(w),
                span,
            }) => Ok((w, span)),
            Some(t) => err(
                t.span,
                format!("expected {what}, found {}", t.tok.describe()),
            ),
            None => err(self.eol, format!("expected {what} at end of line")),
        }
    }

    fn number(&mut self, what: &str) -> Result<(u64, Span)> {
        match self.next() {
            Some(Token {
                tok: Tok::Num(n),
                span,
            }) => Ok((n, span)),
            Some(t) => err(
                t.span,
                format!("expected {what}, found {}", t.tok.describe()),
            ),
            None => err(self.eol, format!("expected {what} at end of line")),
        }
    }

    fn call(&mut self) -> Result<Call> {
        let mut proc = None;
        if matches!(self.peek(), Some(Tok::Word(_))) && self.peek_at(1) == Some(&Tok::Colon) {
            proc = Some(self.word("a process")?);
            self.next();
        }
        let mut name = None;
        if matches!(self.peek(), Some(Tok::Word(_))) && self.peek_at(1) == Some(&Tok::Eq) {
            name = Some(self.word("a name")?);
            self.next();
        }
        let (op, op_span) = self.word("an operation")?;
        self.expect(&Tok::LParen, "`(` after the operation name")?;
        let mut args = Vec::new();
        let close = if self.peek() == Some(&Tok::RParen) {
            self.next().expect("peeked").span
        } else {
            loop {
                args.push(self.arg()?);
                match self.next() {
                    Some(Token {
                        tok: Tok::Comma, ..
                    }) => {}
                    Some(Token {
                        tok: Tok::RParen,
                        span,
                    }) => break span,
                    Some(t) => {
                        return err(
                            t.span,
                            format!("expected `,` or `)`, found {}", t.tok.describe()),
                        );
                    }
                    None => return err(self.eol, "expected `)` at end of line"),
                }
            }
        };
        if let Some(t) = self.next() {
            return err(
                t.span,
                format!(
                    "unexpected {} after `)`: one operation per line",
                    t.tok.describe()
                ),
            );
        }
        Ok(Call {
            proc,
            name,
            op,
            op_span,
            span: op_span.to(close),
            args,
        })
    }

    fn arg(&mut self) -> Result<Arg> {
        let start = self.here();
        let mut key = None;
        if matches!(self.peek(), Some(Tok::Word(_))) && self.peek_at(1) == Some(&Tok::Eq) {
            key = Some(self.word("a key")?);
            self.next();
        }
        let value_start = self.here();
        let value = self.value()?;
        let end = self.tokens[self.pos - 1].span;
        Ok(Arg {
            key,
            value,
            span: value_start.to(end),
            full: start.to(end),
        })
    }

    fn value(&mut self) -> Result<Value> {
        match self.peek() {
            Some(Tok::Num(_)) => Ok(Value::Num(self.number("a number")?.0)),
            Some(Tok::Word(_)) => {
                let (word, span) = self.word("a word")?;
                match self.peek() {
                    Some(Tok::LBracket) => {
                        self.next();
                        let (start, _) = self.number("the first page of the range")?;
                        let end = if self.peek() == Some(&Tok::DotDot) {
                            self.next();
                            self.number("the end of the range")?.0
                        } else {
                            start.saturating_add(1)
                        };
                        self.expect(&Tok::RBracket, "`]` to close the range")?;
                        Ok(Value::Range {
                            map: word,
                            map_span: span,
                            start,
                            end,
                        })
                    }
                    Some(Tok::Pipe) => {
                        let mut flags = vec![(word, span)];
                        while self.peek() == Some(&Tok::Pipe) {
                            self.next();
                            flags.push(self.word("a flag after `|`")?);
                        }
                        Ok(Value::Flags(flags))
                    }
                    _ => Ok(Value::Word(word)),
                }
            }
            Some(t) => {
                let what = t.describe();
                err(self.here(), format!("expected a value, found {what}"))
            }
            None => err(self.eol, "expected a value at end of line"),
        }
    }
}

/// What a label names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Defined {
    Map(MapId),
    Child(ChildId),
    Handle(HandleId),
}

/// Where each part of a step was written, for diagnostics.
#[derive(Clone, Debug)]
struct StepSpans {
    line: usize,
    call: Span,
    fields: Vec<(Field, Span)>,
    comment_lines: Vec<usize>,
}

/// Where each part of the header was written.
#[derive(Clone, Debug, Default)]
struct HeaderSpans {
    line: Option<usize>,
    kernel: Option<Span>,
    comment_lines: Vec<usize>,
}

struct Parser<'a> {
    file: &'a str,
    lines: Vec<&'a str>,
    strict: bool,
    program: Program,
    spans: Vec<StepSpans>,
    header: HeaderSpans,
    seen_header: bool,
    /// Comment lines waiting for the step below them.
    pending: Vec<(String, usize)>,
    /// `(letter, number)` of a label to what it names and its line.
    labels: BTreeMap<(char, u64), (Defined, usize)>,
    maps: usize,
    children: usize,
    handles: usize,
    warnings: Vec<Diagnostic>,
}

/// Interpreting the arguments of one call.
struct Args {
    positional: Vec<Arg>,
    keyed: Vec<Arg>,
    /// Where a missing argument would go: the closing parenthesis.
    close: Span,
}

impl Args {
    fn new(args: Vec<Arg>, call: Span) -> Args {
        let (keyed, positional) = args.into_iter().partition(|a| a.key.is_some());
        let close = Span {
            line: call.line,
            col: call.col + call.len.saturating_sub(1),
            len: 1,
        };
        Args {
            positional,
            keyed,
            close,
        }
    }

    fn positional(&mut self, what: &str) -> Result<Arg> {
        if self.positional.is_empty() {
            return err(self.close, format!("missing {what}"));
        }
        Ok(self.positional.remove(0))
    }

    fn optional_positional(&mut self) -> Option<Arg> {
        (!self.positional.is_empty()).then(|| self.positional.remove(0))
    }

    fn key(&mut self, key: &str) -> Option<Arg> {
        let i = self
            .keyed
            .iter()
            .position(|a| a.key.as_ref().is_some_and(|(k, _)| k == key))?;
        Some(self.keyed.remove(i))
    }
}

fn split_comment(line: &str) -> (&str, Option<&str>) {
    match line.find('#') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    }
}

/// The whitespace-separated words of `code`, each with its char column.
fn words_with_cols(code: &str) -> Vec<(usize, &str)> {
    let mut words = Vec::new();
    let mut start: Option<(usize, usize)> = None;
    for (col, (at, c)) in code.char_indices().enumerate() {
        match (c.is_whitespace(), start) {
            (true, Some((word_col, word_at))) => {
                words.push((word_col, &code[word_at..at]));
                start = None;
            }
            (false, None) => start = Some((col, at)),
            _ => {}
        }
    }
    if let Some((word_col, word_at)) = start {
        words.push((word_col, &code[word_at..]));
    }
    words
}

/// The char column of byte offset `at` in `line`.
fn char_col(line: &str, at: usize) -> usize {
    line[..at].chars().count()
}

impl<'a> Parser<'a> {
    fn new(src: &'a str, file: &'a str, strict: bool) -> Parser<'a> {
        Parser {
            file,
            lines: src.lines().collect(),
            strict,
            program: Program::default(),
            spans: Vec::new(),
            header: HeaderSpans::default(),
            seen_header: false,
            pending: Vec::new(),
            labels: BTreeMap::new(),
            maps: 0,
            children: 0,
            handles: 0,
            warnings: Vec::new(),
        }
    }

    fn at(&self, span: Span, message: String) -> Diagnostic {
        Diagnostic {
            severity: if self.strict {
                Severity::Error
            } else {
                Severity::Warning
            },
            file: self.file.to_string(),
            line: span.line + 1,
            col: span.col + 1,
            len: span.len,
            message,
            source_line: self
                .lines
                .get(span.line)
                .map_or_else(String::new, |l| (*l).to_string()),
        }
    }

    fn diagnostic(&self, e: Error) -> Diagnostic {
        self.at(e.span, e.message)
    }

    fn line_span(&self, line: usize) -> Span {
        let text = self.lines.get(line).copied().unwrap_or("");
        let indent = text.len() - text.trim_start().len();
        Span {
            line,
            col: char_col(text, indent),
            len: text.trim().chars().count(),
        }
    }

    /// Something a strict reader rejects and a lenient one ignores.
    fn soft(&mut self, span: Span, message: String) -> Result<()> {
        if self.strict {
            err(span, message)
        } else {
            let d = self.at(span, format!("{message} (ignored)"));
            self.warnings.push(d);
            Ok(())
        }
    }

    fn run(&mut self) -> Result<()> {
        for index in 0..self.lines.len() {
            let raw = self.lines[index];
            let (code, comment) = split_comment(raw);
            if code.trim().is_empty() {
                if let Some(text) = comment {
                    self.comment(text, index);
                }
                continue;
            }
            let first = code.split_whitespace().next().unwrap_or("");
            if first == MAGIC {
                self.header_line(code, index)?;
                if let Some(text) = comment {
                    self.program.comments.push(text.to_string());
                    self.header.comment_lines.push(index);
                }
                continue;
            }
            if !self.seen_header {
                let span = self.line_span(index);
                self.soft(
                    span,
                    format!(
                        "expected the header line `{MAGIC} {VERSION} ...` before the first step"
                    ),
                )?;
                self.seen_header = true;
            }
            match self.step_line(code, index) {
                Ok((mut step, mut spans)) => {
                    let (comments, lines): (Vec<_>, Vec<_>) =
                        std::mem::take(&mut self.pending).into_iter().unzip();
                    step.comments = comments;
                    spans.comment_lines = lines;
                    if let Some(text) = comment {
                        // A comment after the op moves above it.
                        step.comments.push(text.to_string());
                        spans.comment_lines.push(index);
                    }
                    self.program.steps.push(step);
                    self.spans.push(spans);
                }
                Err(e) if !self.strict => {
                    let d = self.at(e.span, format!("{} (line dropped)", e.message));
                    self.warnings.push(d);
                    if let Some(text) = comment {
                        self.pending.push((text.to_string(), index));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(&(_, line)) = self.pending.first() {
            let span = self.line_span(line);
            self.soft(
                span,
                "comment at the end of the file belongs to no step: comments go above the step \
                 they describe"
                    .into(),
            )?;
        }
        if !self.seen_header {
            let line = self.lines.len();
            let span = Span {
                line,
                col: 0,
                len: 1,
            };
            self.soft(
                span,
                format!("missing the header line `{MAGIC} {VERSION} ...`"),
            )?;
        }
        Ok(())
    }

    fn comment(&mut self, text: &str, line: usize) {
        if self.seen_header {
            self.pending.push((text.to_string(), line));
        } else {
            self.program.comments.push(text.to_string());
            self.header.comment_lines.push(line);
        }
    }

    fn header_line(&mut self, code: &str, line: usize) -> Result<()> {
        let words = words_with_cols(code);
        let span_of = |(col, w): (usize, &str)| Span {
            line,
            col,
            len: w.chars().count(),
        };
        if self.seen_header {
            let span = span_of(words[0]);
            return self.soft(span, "a second header line".into());
        }
        self.seen_header = true;
        self.header.line = Some(line);
        let mut header = Header::default();
        match words.get(1) {
            Some(&(_, VERSION)) => {}
            Some(&w) => self.soft(
                span_of(w),
                format!(
                    "format version `{}` is not supported: this pinfuzz reads {VERSION}",
                    w.1
                ),
            )?,
            None => {
                let span = span_of(words[0]);
                self.soft(
                    span,
                    format!("expected the format version `{VERSION}` after `{MAGIC}`"),
                )?;
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for &w in words.iter().skip(2) {
            let span = span_of(w);
            let Some((key, value)) = w.1.split_once('=') else {
                self.soft(span, format!("expected key=value, found `{}`", w.1))?;
                continue;
            };
            if seen.contains(&key) {
                self.soft(span, format!("`{key}` given twice"))?;
                continue;
            }
            seen.push(key);
            let bad = match key {
                "thp" => match lookup(&THP_MODES, value) {
                    Some(mode) => {
                        header.thp = mode;
                        None
                    }
                    None => Some(format!("thp={value}: expected {}", choices(&THP_MODES))),
                },
                "use_zero_page" => match value {
                    "0" => {
                        header.use_zero_page = false;
                        None
                    }
                    "1" => {
                        header.use_zero_page = true;
                        None
                    }
                    _ => Some(format!("use_zero_page={value}: expected 0 or 1")),
                },
                "kernel" => {
                    // Whether the profile exists is a validity rule
                    // (`rules::kernel_ok`), reported at this span.
                    header.kernel = (value != "any").then(|| value.to_string());
                    self.header.kernel = Some(span);
                    None
                }
                _ => {
                    self.soft(
                        span,
                        format!("unknown header key `{key}` (expected thp, use_zero_page, kernel)"),
                    )?;
                    None
                }
            };
            if let Some(message) = bad {
                self.soft(span, message)?;
            }
        }
        self.program.header = header;
        Ok(())
    }

    fn step_line(&mut self, code: &str, line: usize) -> Result<(Step, StepSpans)> {
        let tokens = tokenize(code, line)?;
        let eol = Span {
            line,
            col: code.trim_end().chars().count(),
            len: 1,
        };
        let call = Cursor {
            tokens: &tokens,
            pos: 0,
            eol,
        }
        .call()?;
        self.interpret(call, line)
    }

    /// Resolve a label that must name `kind` (`'m'`, `'c'`, `'h'` for g or p).
    fn resolve(&self, name: &str, span: Span, kind: char) -> Result<Defined> {
        let what = match kind {
            'm' => "a mapping (m<N>)",
            'c' => "a child (c<N>)",
            _ => "a GUP handle (g<N> or p<N>)",
        };
        let Some(key) = label_key(name) else {
            return err(span, format!("expected {what}, found `{name}`"));
        };
        let Some(&(defined, _)) = self.labels.get(&key) else {
            let hint = match key.0 {
                'm' => "a mmap",
                'c' => "a fork",
                _ => "a GUP call",
            };
            return err(
                span,
                format!("{name} is not defined: name the result of {hint} `{name} = ...` above"),
            );
        };
        let ok = matches!(
            (kind, defined),
            ('m', Defined::Map(_)) | ('c', Defined::Child(_)) | ('h', Defined::Handle(_))
        );
        if !ok {
            return err(span, format!("expected {what}, found `{name}`"));
        }
        Ok(defined)
    }

    fn proc_word(&self, name: &str, span: Span) -> Result<Proc> {
        if name == "parent" {
            return Ok(Proc::Parent);
        }
        match self.resolve(name, span, 'c') {
            Ok(Defined::Child(c)) => Ok(Proc::Child(c)),
            Ok(_) => unreachable!("resolve checks the kind"),
            Err(e) if label_key(name).is_none() => err(
                e.span,
                format!("expected a process (parent or c<N>), found `{name}`"),
            ),
            Err(e) => Err(e),
        }
    }

    fn u16_of(&mut self, n: u64, span: Span) -> Result<u16> {
        match u16::try_from(n) {
            Ok(v) => Ok(v),
            Err(_) => {
                self.soft(span, format!("{n} is too large (at most {})", u16::MAX))?;
                Ok(u16::MAX)
            }
        }
    }

    fn range(&mut self, arg: Arg, spans: &mut StepSpans) -> Result<(MapId, PageRange)> {
        let Value::Range {
            map,
            map_span,
            start,
            end,
        } = arg.value
        else {
            return err(
                arg.span,
                format!(
                    "expected a page range like m0[0..512], found {}",
                    arg.value.describe()
                ),
            );
        };
        let Defined::Map(id) = self.resolve(&map, map_span, 'm')? else {
            unreachable!("resolve checks the kind")
        };
        spans.fields.push((Field::Map, map_span));
        spans.fields.push((Field::Range, arg.span));
        let start = self.u16_of(start, arg.span)?;
        let end = self.u16_of(end, arg.span)?;
        Ok((id, PageRange { start, end }))
    }

    fn keyword<T: Copy>(&self, arg: &Arg, table: &[(T, &'static str)], what: &str) -> Result<T> {
        match &arg.value {
            Value::Word(w) => lookup(table, w).ok_or(()).or_else(|()| {
                err(
                    arg.span,
                    format!("unknown {what} `{w}`: expected {}", choices(table)),
                )
            }),
            v => err(
                arg.span,
                format!(
                    "expected {what} ({}), found {}",
                    choices(table),
                    v.describe()
                ),
            ),
        }
    }

    fn number_arg(&mut self, arg: &Arg, what: &str) -> Result<u16> {
        match arg.value {
            Value::Num(n) => self.u16_of(n, arg.span),
            ref v => err(
                arg.span,
                format!("expected {what} (a number), found {}", v.describe()),
            ),
        }
    }

    fn foll(&mut self, arg: &Arg) -> Result<Foll> {
        let words = match &arg.value {
            Value::Word(w) => vec![(w.clone(), arg.span)],
            Value::Flags(flags) => flags.clone(),
            v => {
                return err(
                    arg.span,
                    format!(
                        "expected FOLL flags (write|longterm|force or none), found {}",
                        v.describe()
                    ),
                );
            }
        };
        let mut foll = Foll::NONE;
        for (w, span) in &words {
            if w == "none" {
                if words.len() > 1 {
                    self.soft(*span, "`none` cannot be combined with flags".into())?;
                }
                continue;
            }
            match Foll::KNOWN.iter().find(|(_, name)| name == w) {
                Some(&(flag, _)) if foll.contains(flag) => {
                    self.soft(*span, format!("flag `{w}` given twice"))?;
                }
                Some(&(flag, _)) => foll = foll | flag,
                None => self.soft(
                    *span,
                    format!("unknown FOLL flag `{w}` (expected write, longterm, force or none)"),
                )?,
            }
        }
        Ok(foll)
    }

    /// Check and register the name written for the result of `op`.
    fn define(&mut self, call: &Call, defined: Defined, line: usize) -> Result<()> {
        let Some((name, span)) = &call.name else {
            return Ok(());
        };
        let letter = match defined {
            Defined::Map(_) => 'm',
            Defined::Child(_) => 'c',
            Defined::Handle(_) if call.op.starts_with("pin_") => 'p',
            Defined::Handle(_) => 'g',
        };
        let key = match label_key(name) {
            Some(key) if key.0 == letter => key,
            found => {
                let example = format!("{letter}{}", defined_ordinal(defined));
                self.soft(
                    *span,
                    format!(
                        "the result of {} is named {letter}<N> (like {example}), not `{name}`",
                        call.op
                    ),
                )?;
                match found {
                    Some(key) => key,
                    None => return Ok(()),
                }
            }
        };
        if let Some(&(_, earlier)) = self.labels.get(&key) {
            self.soft(
                *span,
                format!("{name} is already defined on line {}", earlier + 1),
            )?;
        }
        self.labels.insert(key, (defined, line));
        Ok(())
    }

    fn interpret(&mut self, call: Call, line: usize) -> Result<(Step, StepSpans)> {
        let mut spans = StepSpans {
            line,
            call: call.span,
            fields: Vec::new(),
            comment_lines: Vec::new(),
        };
        let proc = match &call.proc {
            None => Proc::Parent,
            Some((name, span)) => {
                spans.fields.push((Field::Proc, *span));
                self.proc_word(name, *span)?
            }
        };
        let mut args = Args::new(call.args.clone(), call.span);
        let op = match call.op.as_str() {
            "mmap" => {
                let kind_arg = args.positional("the mapping kind")?;
                let kind = self.keyword(&kind_arg, &MAP_KINDS, "mapping kind")?;
                let Some(pages_arg) = args.key("pages") else {
                    return err(args.close, "missing pages=N");
                };
                let pages = self.number_arg(&pages_arg, "pages")?;
                spans.fields.push((Field::Pages, pages_arg.full));
                let prot = match args.key("prot") {
                    Some(arg) => self.keyword(&arg, &PROTS, "protection")?,
                    None => reference::Prot::ReadWrite,
                };
                let offset = match args.key("offset") {
                    Some(arg) => {
                        spans.fields.push((Field::Offset, arg.full));
                        self.number_arg(&arg, "offset")?
                    }
                    None => 0,
                };
                let map = MapId(u8::try_from(self.maps).unwrap_or(u8::MAX));
                Op::Mmap {
                    map,
                    kind,
                    pages,
                    prot,
                    offset,
                }
            }
            "munmap" | "split_huge_pages" => {
                let arg = args.positional("the page range")?;
                let (map, range) = self.range(arg, &mut spans)?;
                if call.op == "munmap" {
                    Op::Munmap { map, range }
                } else {
                    Op::SplitHugePages { map, range }
                }
            }
            "mprotect" => {
                let arg = args.positional("the page range")?;
                let (map, range) = self.range(arg, &mut spans)?;
                let prot_arg = args.positional("the protection (none, r or rw)")?;
                let prot = self.keyword(&prot_arg, &PROTS, "protection")?;
                Op::Mprotect { map, range, prot }
            }
            "madvise" => {
                let arg = args.positional("the page range")?;
                let (map, range) = self.range(arg, &mut spans)?;
                let advice_arg = args.positional("the advice")?;
                let advice = self.keyword(&advice_arg, &ADVICES, "advice")?;
                Op::Madvise { map, range, advice }
            }
            "touch" => {
                let arg = args.positional("the page range")?;
                let (map, range) = self.range(arg, &mut spans)?;
                let access_arg = args.positional("the access (read or write)")?;
                let access = self.keyword(&access_arg, &ACCESSES, "access")?;
                Op::Touch { map, range, access }
            }
            "fork" => Op::Fork {
                child: ChildId(u8::try_from(self.children).unwrap_or(u8::MAX)),
            },
            "exit" => {
                let arg = args.positional("the child (c<N>)")?;
                spans.fields.push((Field::Child, arg.span));
                let Value::Word(name) = &arg.value else {
                    return err(
                        arg.span,
                        format!("expected a child (c<N>), found {}", arg.value.describe()),
                    );
                };
                let Defined::Child(child) = self.resolve(name, arg.span, 'c')? else {
                    unreachable!("resolve checks the kind")
                };
                Op::Exit { child }
            }
            name => {
                if let Some(how) = lookup(&RELEASES, name) {
                    let arg = args.positional("the handle")?;
                    spans.fields.push((Field::Handle, arg.span));
                    let Value::Word(label) = &arg.value else {
                        return err(
                            arg.span,
                            format!(
                                "expected a handle (g<N> or p<N>), found {}",
                                arg.value.describe()
                            ),
                        );
                    };
                    let Defined::Handle(handle) = self.resolve(label, arg.span, 'h')? else {
                        unreachable!("resolve checks the kind")
                    };
                    Op::Release { handle, how }
                } else if let Some(api) = GupApi::from_name(name) {
                    self.gup(api, &mut args, &mut spans)?
                } else {
                    return err(
                        call.op_span,
                        format!(
                            "unknown operation `{name}` (expected mmap, munmap, mprotect, \
                             madvise, touch, get_user_pages[_fast|_remote], \
                             pin_user_pages[_fast|_remote], put, unpin, unpin_dirty, \
                             split_huge_pages, fork or exit)"
                        ),
                    );
                }
            }
        };
        // Leftovers: strict rejects them, lenient ignores them.
        for arg in std::mem::take(&mut args.positional) {
            self.soft(
                arg.full,
                format!("unexpected argument: {} takes no more", call.op),
            )?;
        }
        for arg in std::mem::take(&mut args.keyed) {
            let (key, span) = arg.key.clone().expect("keyed arguments have a key");
            let repeated = matches!(key.as_str(), "pages" | "prot" | "offset") && call.op == "mmap";
            let message = if repeated {
                format!("`{key}` given twice")
            } else {
                format!("unknown key `{key}` for {}", call.op)
            };
            self.soft(span.to(arg.full), message)?;
        }
        let defined = match op {
            Op::Mmap { map, .. } => Some(Defined::Map(map)),
            Op::Gup { handle, .. } => Some(Defined::Handle(handle)),
            Op::Fork { child } => Some(Defined::Child(child)),
            _ => None,
        };
        match defined {
            Some(defined) => self.define(&call, defined, line)?,
            None => {
                if let Some((name, span)) = &call.name {
                    self.soft(
                        *span,
                        format!("{} returns nothing to name `{name}`", call.op),
                    )?;
                }
            }
        }
        match op {
            Op::Mmap { .. } => self.maps += 1,
            Op::Gup { .. } => self.handles += 1,
            Op::Fork { .. } => self.children += 1,
            _ => {}
        }
        let step = Step {
            proc,
            op,
            comments: Vec::new(),
        };
        Ok((step, spans))
    }

    fn gup(&mut self, api: GupApi, args: &mut Args, spans: &mut StepSpans) -> Result<Op> {
        let target = if api.is_remote() {
            let arg = args.positional("the target process (parent or c<N>)")?;
            spans.fields.push((Field::Target, arg.span));
            let Value::Word(name) = &arg.value else {
                return err(
                    arg.span,
                    format!(
                        "expected the target process (parent or c<N>), found {}",
                        arg.value.describe()
                    ),
                );
            };
            Some(self.proc_word(name, arg.span)?)
        } else {
            None
        };
        let arg = args.positional("the page range")?;
        let (map, range) = self.range(arg, spans)?;
        let foll = match args.optional_positional() {
            Some(arg) => {
                spans.fields.push((Field::Foll, arg.span));
                self.foll(&arg)?
            }
            None => Foll::NONE,
        };
        Ok(Op::Gup {
            handle: HandleId(u16::try_from(self.handles).unwrap_or(u16::MAX)),
            api,
            target,
            map,
            range,
            foll,
        })
    }

    fn step_span(&self, step: usize, field: Field) -> Span {
        let spans = &self.spans[step];
        if let Field::Comment(i) = field
            && let Some(&line) = spans.comment_lines.get(i)
        {
            return self.line_span(line);
        }
        spans
            .fields
            .iter()
            .find(|(f, _)| *f == field)
            .map_or(spans.call, |(_, span)| *span)
    }

    fn header_span(&self, field: Field) -> Span {
        match field {
            Field::ProgramComment(i) => {
                let line = self.header.comment_lines.get(i).copied().unwrap_or(0);
                self.line_span(line)
            }
            _ => self
                .header
                .kernel
                .unwrap_or_else(|| self.line_span(self.header.line.unwrap_or(0))),
        }
    }

    fn problem_diagnostic(&self, problem: &Problem) -> Diagnostic {
        let span = match problem.step {
            Some(step) => self.step_span(step, problem.field),
            None => self.header_span(problem.field),
        };
        let mut message = problem.message.clone();
        if let Some(related) = problem.related {
            message.push_str(&format!(" (line {})", self.spans[related].line + 1));
        }
        self.at(span, message)
    }

    fn repair_diagnostic(&self, repair: &Repair) -> Diagnostic {
        let span = match repair.step {
            Some(step) if repair.field == Field::Op => self.line_span(self.spans[step].line),
            Some(step) => self.step_span(step, repair.field),
            None => self.header_span(repair.field),
        };
        self.at(span, repair.message.clone())
    }
}

/// `m12` → `('m', 12)`: a label is one of the letters m, c, g, p and a number.
fn label_key(name: &str) -> Option<(char, u64)> {
    let mut chars = name.chars();
    let letter = chars
        .next()
        .filter(|c| matches!(c, 'm' | 'c' | 'g' | 'p'))?;
    let digits = chars.as_str();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((letter, digits.parse().ok()?))
}

fn defined_ordinal(defined: Defined) -> u64 {
    match defined {
        Defined::Map(m) => u64::from(m.0),
        Defined::Child(c) => u64::from(c.0),
        Defined::Handle(h) => u64::from(h.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_char_columns() {
        let tokens = tokenize("\u{2003} m0[1..2]", 4).expect("tokenizes");
        assert_eq!(tokens.len(), 6);
        assert_eq!(
            tokens[0].span,
            Span {
                line: 4,
                col: 2,
                len: 2
            }
        );
        assert_eq!(tokens[3].tok, Tok::DotDot);
    }

    #[test]
    fn labels_are_letter_and_number() {
        assert_eq!(label_key("m12"), Some(('m', 12)));
        assert_eq!(label_key("p0"), Some(('p', 0)));
        assert_eq!(label_key("x0"), None);
        assert_eq!(label_key("m"), None);
        assert_eq!(label_key("m1a"), None);
    }
}
