//! The target expression language of docs/model.md §1.
//!
//! A target `g*` is written over the teacher coordinates `z1..zr` (1-based), e.g. `z1 + z1*z2` or
//! `(he1(z1) + he2(z1)/2)/2`. The grammar (precedence from low to high):
//!
//! ```text
//! expr  := term (('+' | '-') term)*
//! term  := unary (('*' | '/') unary)*
//! unary := ('-' | '+') unary | power
//! power := atom ('^' unary)?            (right-associative: -z1^2 = -(z1^2))
//! atom  := number | 'pi' | zK | func '(' expr ')' | 'he' '(' integer ',' expr ')' | '(' expr ')'
//! func  := he0..he8 | tanh | erf | relu | sign | abs | exp | sin | cos | sqrt
//! ```
//!
//! `heK` is the probabilists' Hermite polynomial (`he1 = x`, `he2 = x² − 1`, recurrence
//! `he(k+1) = x·he(k) − k·he(k−1)`). The parser is a small recursive-descent parser; the result is
//! compiled to a postfix program that is evaluated sample by sample without allocation.

use crate::error::{Error, Result};

/// A unary function of the expression language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// Hyperbolic tangent.
    Tanh,
    /// Error function.
    Erf,
    /// `max(x, 0)`.
    Relu,
    /// Sign, with `sign(0) = 0`.
    Sign,
    /// Absolute value.
    Abs,
    /// Exponential.
    Exp,
    /// Sine.
    Sin,
    /// Cosine.
    Cos,
    /// Square root (NaN for negative arguments).
    Sqrt,
    /// Probabilists' Hermite polynomial of the given degree.
    Hermite(u32),
}

impl Func {
    /// Applies the function.
    #[inline]
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Func::Tanh => x.tanh(),
            Func::Erf => libm::erf(x),
            Func::Relu => x.max(0.0),
            Func::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Func::Abs => x.abs(),
            Func::Exp => x.exp(),
            Func::Sin => x.sin(),
            Func::Cos => x.cos(),
            Func::Sqrt => x.sqrt(),
            Func::Hermite(k) => hermite(k, x),
        }
    }
}

/// Probabilists' Hermite polynomials (defined in [`crate::special`]).
pub use crate::special::hermite;

/// One instruction of the compiled postfix program.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Const(f64),
    Var(usize),
    Neg,
    Add,
    Sub,
    Mul,
    Div,
    PowInt(i32),
    Pow,
    Call(Func),
}

/// A parsed, compiled target expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    source: String,
    ops: Vec<Op>,
    max_var: usize,
    stack_depth: usize,
}

/// Largest degree of a polynomial target in one variable ([`Expr::axis_degree`]): the
/// moments of higher ones are beyond double-precision Gaussian quadrature.
pub const MAX_AXIS_DEGREE: u32 = 20;

/// Largest stack any program may need (deeply nested expressions are rejected beyond this).
const MAX_STACK: usize = 64;

impl Expr {
    /// Parses an expression.
    ///
    /// # Errors
    /// [`Error::Expr`] with the 1-based column for syntax errors, unknown functions or variables
    /// (`z0`, `x1`, ...), and expressions nested deeper than 64 levels.
    pub fn parse(source: &str) -> Result<Expr> {
        let mut p = Parser {
            src: source,
            bytes: source.as_bytes(),
            pos: 0,
            ops: Vec::new(),
            max_var: 0,
            depth: 0,
        };
        p.skip_ws();
        if p.pos >= p.bytes.len() {
            return Err(p.err_at(0, "the expression is empty"));
        }
        p.expr()?;
        p.skip_ws();
        if p.pos < p.bytes.len() {
            let c = p.src[p.pos..].chars().next().unwrap_or(' ');
            return Err(p.err(format!("expected an operator or the end, but found '{c}'")));
        }
        let ops = p.ops;
        // Compute the stack depth the program needs.
        let mut depth = 0usize;
        let mut max_depth = 0usize;
        for op in &ops {
            match op {
                Op::Const(_) | Op::Var(_) => depth += 1,
                Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Pow => depth -= 1,
                Op::Neg | Op::PowInt(_) | Op::Call(_) => {}
            }
            max_depth = max_depth.max(depth);
        }
        if max_depth > MAX_STACK {
            return Err(Error::Expr {
                expr: crate::error::cut(source),
                column: 1,
                message: format!("the expression is nested too deeply (stack {max_depth} > {MAX_STACK})"),
            });
        }
        let expr = Expr {
            source: source.to_string(),
            ops,
            max_var: p.max_var,
            stack_depth: max_depth,
        };
        if let Some(deg) = expr.axis_degree().filter(|&k| k > MAX_AXIS_DEGREE) {
            return Err(Error::Expr {
                expr: crate::error::cut(source),
                column: 1,
                message: format!(
                    "a polynomial of degree {deg} in one variable; degrees above {MAX_AXIS_DEGREE} are not supported (the Gaussian quadrature of its moments loses double precision)"
                ),
            });
        }
        Ok(expr)
    }

    /// For a polynomial, its largest degree in any one variable (`he(3, z1)*z2^2`: 3); `None`
    /// when the expression is not a polynomial (or its degree is not evident from its form).
    pub fn axis_degree(&self) -> Option<u32> {
        let r = self.max_var + 1;
        let mut stack: Vec<Option<Vec<u32>>> = Vec::new();
        let scale = |v: Option<Vec<u32>>, k: u32| v.map(|d| d.iter().map(|x| x.saturating_mul(k)).collect());
        let constant = |v: &Option<Vec<u32>>| v.as_ref().is_some_and(|d| d.iter().all(|&x| x == 0));
        for op in &self.ops {
            let next = match *op {
                Op::Const(_) => Some(vec![0; r]),
                Op::Var(j) => Some((0..r).map(|i| u32::from(i == j)).collect()),
                Op::Neg => stack.pop()?,
                Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Pow => {
                    let b = stack.pop()?;
                    let a = stack.pop()?;
                    match *op {
                        Op::Add | Op::Sub => a
                            .zip(b)
                            .map(|(a, b)| a.iter().zip(&b).map(|(x, y)| *x.max(y)).collect()),
                        Op::Mul => a
                            .zip(b)
                            .map(|(a, b)| a.iter().zip(&b).map(|(x, y)| x.saturating_add(*y)).collect()),
                        // p / c is a polynomial; c1 ^ c2 is a constant.
                        Op::Div if constant(&b) => a,
                        Op::Pow if constant(&a) && constant(&b) => a,
                        _ => None,
                    }
                }
                Op::PowInt(k) => {
                    let a = stack.pop()?;
                    match u32::try_from(k) {
                        Ok(k) => scale(a, k),
                        Err(_) if constant(&a) => a,
                        Err(_) => None,
                    }
                }
                Op::Call(Func::Hermite(k)) => scale(stack.pop()?, k),
                Op::Call(_) => {
                    let a = stack.pop()?;
                    if constant(&a) {
                        a
                    } else {
                        None
                    }
                }
            };
            stack.push(next);
        }
        stack.pop()?.map(|d| d.into_iter().max().unwrap_or(0))
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The largest variable index used (`r` when it is not given).
    pub fn max_var(&self) -> usize {
        self.max_var
    }

    /// Evaluates the expression at one point `x = (z1, ..., zr)`.
    ///
    /// # Panics
    /// If `x` is shorter than [`Expr::max_var`].
    #[inline]
    pub fn eval(&self, x: &[f64]) -> f64 {
        assert!(x.len() >= self.max_var, "expression needs {} variables", self.max_var);
        let mut stack = [0.0f64; MAX_STACK];
        let mut sp = 0usize;
        for op in &self.ops {
            match *op {
                Op::Const(c) => {
                    stack[sp] = c;
                    sp += 1;
                }
                Op::Var(k) => {
                    stack[sp] = x[k];
                    sp += 1;
                }
                Op::Neg => stack[sp - 1] = -stack[sp - 1],
                Op::Add => {
                    sp -= 1;
                    stack[sp - 1] += stack[sp];
                }
                Op::Sub => {
                    sp -= 1;
                    stack[sp - 1] -= stack[sp];
                }
                Op::Mul => {
                    sp -= 1;
                    stack[sp - 1] *= stack[sp];
                }
                Op::Div => {
                    sp -= 1;
                    stack[sp - 1] /= stack[sp];
                }
                Op::Pow => {
                    sp -= 1;
                    stack[sp - 1] = stack[sp - 1].powf(stack[sp]);
                }
                Op::PowInt(k) => stack[sp - 1] = stack[sp - 1].powi(k),
                Op::Call(f) => stack[sp - 1] = f.apply(stack[sp - 1]),
            }
        }
        debug_assert_eq!(sp, 1);
        stack[0]
    }

    /// Evaluates on `m` points stored row-major with row stride `stride` (`x[i*stride + k]` is
    /// coordinate `k` of point `i`), writing `out[i]`.
    pub fn eval_rows(&self, x: &[f64], stride: usize, out: &mut [f64]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.eval(&x[i * stride..i * stride + stride]);
        }
    }

    /// Stack depth the program needs (at most 64).
    pub fn stack_depth(&self) -> usize {
        self.stack_depth
    }
}

impl std::fmt::Display for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    ops: Vec<Op>,
    max_var: usize,
    depth: usize,
}

/// Deepest recursion the parser accepts (guards the call stack against hostile input).
const MAX_DEPTH: usize = 256;

impl Parser<'_> {
    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!(
                "the expression is nested too deeply (more than {MAX_DEPTH} levels)"
            )));
        }
        Ok(())
    }

    fn err_at(&self, pos: usize, msg: impl Into<String>) -> Error {
        // Columns count characters, not bytes.
        let column = self.src[..pos.min(self.src.len())].chars().count() + 1;
        // Quote at most 80 characters around the fault, so that a huge input gives a short line.
        let chars: Vec<char> = self.src.chars().collect();
        let expr = if chars.len() <= 80 {
            self.src.to_string()
        } else {
            let from = (column - 1).saturating_sub(40).min(chars.len().saturating_sub(80));
            let to = (from + 80).min(chars.len());
            format!(
                "{}{}{}",
                if from > 0 { "…" } else { "" },
                chars[from..to].iter().collect::<String>(),
                if to < chars.len() { "…" } else { "" }
            )
        };
        Error::Expr {
            expr,
            column,
            message: msg.into(),
        }
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        self.err_at(self.pos, msg)
    }

    fn skip_ws(&mut self) {
        while self.pos < self.bytes.len() && self.bytes[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes.get(self.pos).copied()
    }

    fn found(&mut self) -> String {
        match self.peek() {
            None => "the end of the expression".to_string(),
            Some(_) => format!("'{}'", self.src[self.pos..].chars().next().unwrap()),
        }
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            let found = self.found();
            Err(self.err(format!("expected '{}', but found {found}", c as char)))
        }
    }

    fn expr(&mut self) -> Result<()> {
        self.term()?;
        loop {
            match self.peek() {
                Some(b'+') => {
                    self.pos += 1;
                    self.term()?;
                    self.ops.push(Op::Add);
                }
                Some(b'-') => {
                    self.pos += 1;
                    self.term()?;
                    self.ops.push(Op::Sub);
                }
                _ => return Ok(()),
            }
        }
    }

    fn term(&mut self) -> Result<()> {
        self.unary()?;
        loop {
            match self.peek() {
                Some(b'*') => {
                    self.pos += 1;
                    self.unary()?;
                    self.ops.push(Op::Mul);
                }
                Some(b'/') => {
                    self.pos += 1;
                    self.unary()?;
                    self.ops.push(Op::Div);
                }
                _ => return Ok(()),
            }
        }
    }

    fn unary(&mut self) -> Result<()> {
        self.enter()?;
        let r = self.unary_inner();
        self.depth -= 1;
        r
    }

    fn unary_inner(&mut self) -> Result<()> {
        match self.peek() {
            Some(b'-') => {
                self.pos += 1;
                self.unary()?;
                self.ops.push(Op::Neg);
                Ok(())
            }
            Some(b'+') => {
                self.pos += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Result<()> {
        self.atom()?;
        if self.peek() == Some(b'^') {
            self.pos += 1;
            let start = self.ops.len();
            self.unary()?;
            // Integer constant exponents use powi: exact for negative bases.
            if self.ops.len() == start + 1 {
                if let Op::Const(c) = self.ops[start] {
                    if c.fract() == 0.0 && c.abs() <= 64.0 {
                        self.ops.truncate(start);
                        self.ops.push(Op::PowInt(c as i32));
                        return Ok(());
                    }
                }
            }
            self.ops.push(Op::Pow);
        }
        Ok(())
    }

    fn number(&mut self) -> Result<f64> {
        let start = self.pos;
        let b = self.bytes;
        while self.pos < b.len() && (b[self.pos].is_ascii_digit() || b[self.pos] == b'.') {
            self.pos += 1;
        }
        if self.pos < b.len() && (b[self.pos] == b'e' || b[self.pos] == b'E') {
            let save = self.pos;
            self.pos += 1;
            if self.pos < b.len() && (b[self.pos] == b'+' || b[self.pos] == b'-') {
                self.pos += 1;
            }
            if self.pos < b.len() && b[self.pos].is_ascii_digit() {
                while self.pos < b.len() && b[self.pos].is_ascii_digit() {
                    self.pos += 1;
                }
            } else {
                self.pos = save;
            }
        }
        let text = &self.src[start..self.pos];
        text.parse::<f64>()
            .map_err(|_| self.err_at(start, format!("malformed number '{text}'")))
    }

    fn ident(&mut self) -> &str {
        let start = self.pos;
        let b = self.bytes;
        while self.pos < b.len() && (b[self.pos].is_ascii_alphanumeric() || b[self.pos] == b'_') {
            self.pos += 1;
        }
        &self.src[start..self.pos]
    }

    fn atom(&mut self) -> Result<()> {
        let Some(c) = self.peek() else {
            return Err(
                self.err("expected a number, a variable, a function or '(', but found the end of the expression")
            );
        };
        if c.is_ascii_digit() || c == b'.' {
            let v = self.number()?;
            self.ops.push(Op::Const(v));
            return Ok(());
        }
        if c == b'(' {
            self.pos += 1;
            self.expr()?;
            return self.expect(b')');
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = self.pos;
            let name = self.ident().to_string();
            return self.named(&name, start);
        }
        let found = self.found();
        Err(self.err(format!(
            "expected a number, a variable, a function or '(', but found {found}"
        )))
    }

    fn named(&mut self, name: &str, start: usize) -> Result<()> {
        // The name as a message quotes it (a huge identifier is cut).
        let shown = crate::error::cut(name);
        // Variables z1, z2, ...
        if let Some(idx) = name.strip_prefix('z') {
            if !idx.is_empty() && idx.bytes().all(|b| b.is_ascii_digit()) {
                let k: usize = idx
                    .parse()
                    .map_err(|_| self.err_at(start, format!("variable index too large in '{shown}'")))?;
                if k == 0 {
                    return Err(self.err_at(start, "variables are numbered from 1 (z1, z2, ...), but found 'z0'"));
                }
                self.max_var = self.max_var.max(k);
                self.ops.push(Op::Var(k - 1));
                return Ok(());
            }
        }
        if name == "pi" {
            self.ops.push(Op::Const(std::f64::consts::PI));
            return Ok(());
        }
        let func = match name {
            "tanh" => Func::Tanh,
            "erf" => Func::Erf,
            "relu" => Func::Relu,
            "sign" => Func::Sign,
            "abs" => Func::Abs,
            "exp" => Func::Exp,
            "sin" => Func::Sin,
            "cos" => Func::Cos,
            "sqrt" => Func::Sqrt,
            "he" => return self.he_call(start),
            _ => {
                if let Some(k) = name.strip_prefix("he").and_then(|s| s.parse::<u32>().ok()) {
                    if k <= 8 {
                        Func::Hermite(k)
                    } else {
                        return Err(self.err_at(
                            start,
                            format!("unknown function '{shown}' (he0..he8 exist; write he({k}, x) for higher degrees)"),
                        ));
                    }
                } else if self.peek() == Some(b'(') {
                    return Err(self.err_at(start, format!(
                        "unknown function '{shown}' (known: he0..he8, he(k, x), tanh, erf, relu, sign, abs, exp, sin, cos, sqrt)"
                    )));
                } else {
                    return Err(self.err_at(
                        start,
                        format!("unknown variable '{shown}' (variables are z1, z2, ..., zr)"),
                    ));
                }
            }
        };
        self.expect(b'(')?;
        self.expr()?;
        self.expect(b')')?;
        self.ops.push(Op::Call(func));
        Ok(())
    }

    fn he_call(&mut self, start: usize) -> Result<()> {
        self.expect(b'(')?;
        self.skip_ws();
        let kpos = self.pos;
        // The degree is a literal integer: say so, rather than "malformed number".
        let literal = self.src[kpos..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '.');
        if !literal {
            let shown: String = self.src[kpos..]
                .chars()
                .take_while(|c| *c != ',' && *c != ')')
                .take(20)
                .collect();
            return Err(self.err_at(
                kpos,
                format!(
                    "he(k, x) needs a literal integer degree k (e.g. he(3, z1)), but k is '{}'",
                    shown.trim()
                ),
            ));
        }
        let k = self.number()?;
        if k.fract() != 0.0 || !(0.0..=64.0).contains(&k) {
            return Err(self.err_at(
                kpos,
                format!("he(k, x) needs an integer degree 0 <= k <= 64, but k is {k}"),
            ));
        }
        self.expect(b',')?;
        self.expr()?;
        self.expect(b')')?;
        self.ops.push(Op::Call(Func::Hermite(k as u32)));
        let _ = start;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(s: &str, x: &[f64]) -> f64 {
        Expr::parse(s).unwrap().eval(x)
    }

    #[test]
    fn arithmetic_and_precedence() {
        let x = [2.0, 3.0, -1.5];
        assert_eq!(ev("z1 + z1*z2", &x), 2.0 + 6.0);
        assert_eq!(ev("-z1^2", &x), -4.0);
        assert_eq!(ev("(-z1)^2", &x), 4.0);
        assert_eq!(ev("2^3^2", &x), 512.0);
        assert_eq!(ev("z3^3", &x), -3.375);
        assert_eq!(ev("z1 - z2 - z3", &x), 2.0 - 3.0 + 1.5);
        assert_eq!(ev("z2 / z1 / 2", &x), 0.75);
        assert_eq!(ev("1e-1 * 10", &x), 1.0);
        assert_eq!(ev("2^-1", &x), 0.5);
        assert!((ev("z1^0.5", &x) - 2f64.sqrt()).abs() < 1e-15);
        assert!((ev("pi", &x) - std::f64::consts::PI).abs() < 1e-15);
    }

    #[test]
    fn functions() {
        let x = [0.7, -0.3];
        assert_eq!(ev("relu(z2)", &x), 0.0);
        assert_eq!(ev("relu(z1)", &x), 0.7);
        assert_eq!(ev("sign(z2) + sign(0)", &x), -1.0);
        assert_eq!(ev("abs(z2)", &x), 0.3);
        assert!((ev("tanh(z1)", &x) - 0.7f64.tanh()).abs() < 1e-15);
        assert!((ev("erf(z1)", &x) - 0.677_801_193_837_418_5).abs() < 1e-12);
        assert!(
            (ev("exp(z1)+sin(z1)+cos(z1)+sqrt(z1)", &x) - (0.7f64.exp() + 0.7f64.sin() + 0.7f64.cos() + 0.7f64.sqrt()))
                .abs()
                < 1e-14
        );
    }

    #[test]
    fn hermite_closed_forms() {
        for &x in &[-2.3, -0.4, 0.0, 0.9, 3.1] {
            let x2: f64 = x * x;
            let closed = [
                1.0,
                x,
                x2 - 1.0,
                x * x2 - 3.0 * x,
                x2 * x2 - 6.0 * x2 + 3.0,
                x * x2 * x2 - 10.0 * x * x2 + 15.0 * x,
                x2 * x2 * x2 - 15.0 * x2 * x2 + 45.0 * x2 - 15.0,
            ];
            for (k, c) in closed.iter().enumerate() {
                let v = ev(&format!("he{k}(z1)"), &[x]);
                assert!((v - c).abs() < 1e-12 * (1.0 + c.abs()), "he{k}({x})");
                let w = ev(&format!("he({k}, z1)"), &[x]);
                assert_eq!(v, w);
            }
        }
    }

    #[test]
    fn max_var_is_r() {
        assert_eq!(Expr::parse("z1 + z1*z2*z3").unwrap().max_var(), 3);
        assert_eq!(Expr::parse("he2(z7)").unwrap().max_var(), 7);
        assert_eq!(Expr::parse("3").unwrap().max_var(), 0);
        // Degrees per variable of polynomials; None for anything else.
        let deg = |s: &str| Expr::parse(s).unwrap().axis_degree();
        assert_eq!(deg("he(3, z1)*z2^2"), Some(3));
        assert_eq!(deg("z1 + z1*z2 + z1*z2*z3"), Some(1));
        assert_eq!(deg("(z1 + z2)^4 / 2 - 3"), Some(4));
        assert_eq!(deg("he2(z1 * z1)"), Some(4));
        assert_eq!(deg("2^3 * z1"), Some(1));
        assert_eq!(deg("tanh(z1)"), None);
        assert_eq!(deg("z1 / z2"), None);
        assert_eq!(deg("z1^-1"), None);
        assert_eq!(deg("he(20, z1) * he(20, z2)"), Some(20));
        for s in ["he(21, z1)", "z1^30", "he(64, z1)", "z1^11 * z1^10"] {
            match Expr::parse(s) {
                Err(Error::Expr { message, .. }) => assert!(message.contains("degrees above 20"), "{s}: {message}"),
                other => panic!("{s}: {other:?}"),
            }
        }
    }

    fn err(s: &str) -> (usize, String) {
        match Expr::parse(s) {
            Err(Error::Expr { column, message, .. }) => (column, message),
            other => panic!("expected an error for {s}, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_problem_and_column() {
        let (c, m) = err("z1 + foo(z2)");
        assert_eq!(c, 6);
        assert!(m.contains("unknown function 'foo'"), "{m}");
        let (c, m) = err("z1 + x2");
        assert_eq!(c, 6);
        assert!(m.contains("unknown variable 'x2'"), "{m}");
        let (c, m) = err("z1 + (z2");
        assert_eq!(c, 9);
        assert!(m.contains("expected ')'"), "{m}");
        let (c, _) = err("z1 +* z2");
        assert_eq!(c, 5);
        let (c, m) = err("z0 + z1");
        assert_eq!(c, 1);
        assert!(m.contains("z0"));
        let (c, _) = err("z1 z2");
        assert_eq!(c, 4);
        let (_, m) = err("");
        assert!(m.contains("empty"));
        let (_, m) = err("he9(z1)");
        assert!(m.contains("he(9, x)"));
        let (c, _) = err("he(1.5, z1)");
        assert_eq!(c, 4);
        let (_, m) = err(&"(".repeat(200));
        assert!(m.contains("expected"), "{m}");
        let (_, m) = err(&"(".repeat(100_000));
        assert!(m.contains("nested too deeply"), "{m}");
        let (_, m) = err(&"-".repeat(100_000));
        assert!(m.contains("nested too deeply"), "{m}");
    }

    #[test]
    fn deep_but_valid_nesting_is_rejected_cleanly() {
        let s = (0..100).map(|_| "z1+(").collect::<String>() + "z1" + &")".repeat(100);
        assert!(Expr::parse(&s).is_err());
    }
}
