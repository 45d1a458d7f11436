//! Subject patterns and the index that finds every pattern matching a subject.
//!
//! A [`Pattern`] is a glob over report subjects: `*` matches any run of characters (including
//! none, and including dots), `?` matches exactly one character (one Unicode scalar value) and
//! every other character stands for itself. There are no escapes, so a pattern can never match
//! a literal `*` or `?`; subjects may not contain them anyway (see
//! [`check_subject`](crate::names::check_subject)).
//!
//! ```
//! use netsvc_proto::Pattern;
//!
//! let p = Pattern::new("system.*").unwrap();
//! assert!(p.matches("system.time"));
//! assert!(p.matches("system.a.b"));
//! assert!(!p.matches("system"));
//! ```
//!
//! A service that forwards reports holds thousands of subscriptions; testing each one against
//! every report would make the cost of a report grow with the number of subscribers.
//! [`PatternIndex`] instead looks literal patterns up by the subject in a hash map and keeps
//! the wildcard patterns in a character trie that it runs the subject through once, so the cost
//! depends on the subject and on how many wildcard patterns are "still alive" while reading it,
//! not on how many patterns are stored.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use foldhash::fast::RandomState;

use crate::names::{NameError, check_pattern};

/// A validated subject pattern, normalised so that runs of `*` are a single `*`.
///
/// Normalising makes equal-meaning patterns compare, hash and display equal (`a**b` and `a*b`
/// are the same subscription) and keeps the trie in [`PatternIndex`] free of redundant states.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pattern {
    // Shared rather than copied: a pattern is typically held both by a subscription and by
    // the index that matches it (a hub holds one per relayed subscription), and it never
    // changes.
    text: Arc<str>,
    // Cached because the routing layer asks on every subscription and the answer never changes.
    literal: bool,
}

impl Pattern {
    /// Validates `text` as a pattern (see [`check_pattern`]) and normalises it.
    ///
    /// # Errors
    ///
    /// Returns the [`NameError`] from [`check_pattern`]: the text is empty, too long or contains
    /// a control character.
    pub fn new(text: &str) -> Result<Self, NameError> {
        check_pattern(text)?;
        let mut normalised = String::with_capacity(text.len());
        for c in text.chars() {
            if !(c == '*' && normalised.ends_with('*')) {
                normalised.push(c);
            }
        }
        let literal = !normalised.contains(['*', '?']);
        Ok(Self {
            text: Arc::from(normalised),
            literal,
        })
    }

    /// The normalised pattern text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has no wildcard and so matches exactly one subject: itself.
    pub fn is_literal(&self) -> bool {
        self.literal
    }

    /// Whether `subject` matches this pattern.
    ///
    /// Uses the two-pointer glob algorithm that only remembers the last `*`: later stars
    /// make earlier backtracking points irrelevant, which bounds the work by
    /// `O(len(pattern) × len(subject))` without allocating.
    pub fn matches(&self, subject: &str) -> bool {
        if self.literal {
            return &*self.text == subject;
        }
        glob_match(&self.text, subject)
    }
}

/// The two-pointer glob match over byte offsets, stepping by whole characters so that `?`
/// consumes one `char` however many bytes it takes.
fn glob_match(pattern: &str, subject: &str) -> bool {
    let (mut p, mut s) = (0, 0);
    // After the last `*` seen: where the pattern resumes and where the subject resumed last.
    let mut backtrack: Option<(usize, usize)> = None;
    loop {
        if let Some(pc) = pattern[p..].chars().next() {
            if pc == '*' {
                p += 1;
                backtrack = Some((p, s));
                continue;
            }
            if let Some(sc) = subject[s..].chars().next()
                && (pc == '?' || pc == sc)
            {
                p += pc.len_utf8();
                s += sc.len_utf8();
                continue;
            }
        } else if s == subject.len() {
            return true;
        }
        // Mismatch: let the last `*` swallow one more character and retry after it.
        let Some((resume_p, star_s)) = backtrack else {
            return false;
        };
        let Some(sc) = subject[star_s..].chars().next() else {
            return false;
        };
        s = star_s + sc.len_utf8();
        p = resume_p;
        backtrack = Some((p, s));
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The text is the whole identity; the cached flag would only add noise.
        f.debug_tuple("Pattern").field(&self.text).finish()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl AsRef<str> for Pattern {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl FromStr for Pattern {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for Pattern {
    type Error = NameError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<String> for Pattern {
    type Error = NameError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<Pattern> for String {
    fn from(pattern: Pattern) -> Self {
        pattern.text.to_string()
    }
}

/// Index of a trie node in [`Trie::nodes`].
type NodeId = u32;

/// "No such child"; `u32` ids keep nodes small, and no index holds four billion nodes.
const NIL: NodeId = NodeId::MAX;

const ROOT: NodeId = 0;

/// One trie state: the pattern prefix spelt by the edges from the root to it.
#[derive(Clone)]
struct Node<K> {
    parent: NodeId,
    /// The edge from the parent: a literal character, or `?`/`*` for the wildcard children.
    /// Patterns have no escapes, so a literal edge can never be labelled `?` or `*`.
    label: char,
    /// Literal children sorted by character for binary search; most nodes have one or two.
    literals: Vec<(char, NodeId)>,
    any_one: NodeId,
    star: NodeId,
    /// Present exactly when some pattern ends here.
    terminal: Option<Box<Terminal<K>>>,
}

impl<K> Node<K> {
    fn new(parent: NodeId, label: char) -> Self {
        Self {
            parent,
            label,
            literals: Vec::new(),
            any_one: NIL,
            star: NIL,
            terminal: None,
        }
    }

    fn is_leaf(&self) -> bool {
        self.literals.is_empty() && self.any_one == NIL && self.star == NIL
    }

    fn literal_child(&self, c: char) -> NodeId {
        match self.literals.binary_search_by_key(&c, |&(l, _)| l) {
            Ok(i) => self.literals[i].1,
            Err(_) => NIL,
        }
    }
}

/// The pattern ending at a trie node and every key registered for it.
#[derive(Clone)]
struct Terminal<K> {
    pattern: Pattern,
    keys: Keys<K>,
}

/// The keys stored under one pattern; never empty.
#[derive(Clone)]
enum Keys<K> {
    /// Nearly every pattern has a single subscriber, so that case costs no allocation.
    One(K),
    /// Always two keys or more. A set rather than a Vec so that a pattern with many
    /// subscribers (`*` for a logger on every node, say) does not make insert and remove
    /// quadratic; boxed so that it does not widen the common case.
    #[allow(
        clippy::box_collection,
        reason = "an inline set would make every entry 24 bytes wider for the rare case"
    )]
    Many(Box<HashSet<K, RandomState>>),
}

impl<K> Keys<K> {
    fn iter(&self) -> impl Iterator<Item = &K> {
        let (one, many) = match self {
            Self::One(key) => (Some(key), None),
            Self::Many(set) => (None, Some(set.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

impl<K: Eq + Hash> Keys<K> {
    /// Adds `key`; returns `false` if it was already present.
    fn insert(&mut self, key: K) -> bool {
        match self {
            Self::Many(set) => set.insert(key),
            Self::One(existing) => {
                if *existing == key {
                    return false;
                }
                let mut set = HashSet::with_capacity_and_hasher(2, RandomState::default());
                set.insert(key);
                if let Self::One(first) = std::mem::replace(self, Self::Many(Box::new(set)))
                    && let Self::Many(set) = self
                {
                    set.insert(first);
                }
                true
            }
        }
    }

    /// Removes `key`: `None` if it was absent, otherwise whether no key is left (the caller
    /// then drops the whole entry, which is why `One` never has to become empty).
    fn remove(&mut self, key: &K) -> Option<bool> {
        match self {
            Self::One(existing) => (existing == key).then_some(true),
            Self::Many(set) => {
                if !set.remove(key) {
                    return None;
                }
                if set.len() == 1 {
                    // Back to the compact form, so that churn does not leave sets behind.
                    let last = set.drain().next();
                    if let Some(last) = last {
                        *self = Self::One(last);
                    }
                }
                Some(false)
            }
        }
    }
}

/// A literal pattern as a map key that can be looked up by the subject it matches.
///
/// `Pattern` equality is text equality (its other field is derived from the text), so hashing
/// the text alone keeps `Borrow<str>` consistent with `Eq`.
#[derive(Clone, PartialEq, Eq)]
struct LiteralKey(Pattern);

impl Hash for LiteralKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.as_str().hash(state);
    }
}

impl Borrow<str> for LiteralKey {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

/// Finds every stored pattern that matches a subject without testing each pattern in turn.
///
/// Each pattern is stored with one or more keys (a subscriber id, a connection handle…); the
/// index holds a set of `(pattern, key)` pairs. Literal patterns (no wildcard), by far the
/// most common kind, live in a hash map keyed by the one subject they match, so they cost a
/// single lookup per subject. Wildcard patterns live in a character trie that matching runs
/// as an NFA, reading the subject once and following all paths still consistent with the
/// characters read so far; that costs `O(len(subject) × live states)`, and nothing at all
/// when no wildcard pattern is stored.
///
/// ```
/// use netsvc_proto::{Pattern, PatternIndex};
///
/// let mut index = PatternIndex::new();
/// index.insert(&Pattern::new("sensor.*").unwrap(), "all sensors");
/// index.insert(&Pattern::new("*.temp").unwrap(), "temperatures");
/// index.insert(&Pattern::new("room?.light").unwrap(), "lights");
/// index.insert(&Pattern::new("sensor.7.temp").unwrap(), "sensor 7");
///
/// let mut hits = index.matches("sensor.7.temp");
/// hits.sort();
/// assert_eq!(hits, ["all sensors", "sensor 7", "temperatures"]);
/// assert!(!index.any_match("room12.light"));
/// ```
#[derive(Clone)]
pub struct PatternIndex<K> {
    /// Literal patterns by their text.
    literals: HashMap<LiteralKey, Keys<K>, RandomState>,
    /// Patterns with a wildcard.
    trie: Trie<K>,
    /// Number of `(pattern, key)` pairs, in both parts.
    len: usize,
}

impl<K> Default for PatternIndex<K> {
    fn default() -> Self {
        Self {
            literals: HashMap::default(),
            trie: Trie::default(),
            len: 0,
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for PatternIndex<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (pattern, keys) in self.entries() {
            map.entry(pattern, &DebugKeys(keys));
        }
        map.finish()
    }
}

/// Shows a key set like a set, whichever form it has.
struct DebugKeys<'a, K>(&'a Keys<K>);

impl<K: fmt::Debug> fmt::Debug for DebugKeys<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.iter()).finish()
    }
}

impl<K> PatternIndex<K> {
    /// Number of `(pattern, key)` pairs stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no pair is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every stored `(pattern, key)` pair, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Pattern, &K)> {
        self.entries()
            .flat_map(|(pattern, keys)| keys.iter().map(move |key| (pattern, key)))
    }

    fn entries(&self) -> impl Iterator<Item = (&Pattern, &Keys<K>)> {
        self.literals
            .iter()
            .map(|(literal, keys)| (&literal.0, keys))
            .chain(self.trie.terminals())
    }

    /// Number of trie nodes in use, root included; lets tests check that removal prunes.
    #[cfg(test)]
    fn live_nodes(&self) -> usize {
        self.trie.nodes.len() - self.trie.free.len()
    }
}

impl<K: Clone + Eq + Hash> PatternIndex<K> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the pair `(pattern, key)`; returns `false` if it was already present.
    ///
    /// # Panics
    ///
    /// Only if the trie would need more than `u32::MAX - 1` nodes, which takes millions of
    /// long, distinct wildcard patterns.
    pub fn insert(&mut self, pattern: &Pattern, key: K) -> bool {
        let added = if pattern.is_literal() {
            // Look up by `&str` first so that adding a key to an existing pattern does not
            // clone the pattern just to build an owned map key.
            if let Some(keys) = self.literals.get_mut(pattern.as_str()) {
                keys.insert(key)
            } else {
                self.literals
                    .insert(LiteralKey(pattern.clone()), Keys::One(key));
                true
            }
        } else {
            self.trie.insert(pattern, key)
        };
        if added {
            self.len += 1;
        }
        added
    }

    /// Removes the pair `(pattern, key)`; returns whether it was present.
    ///
    /// Trie nodes that no longer lead to any pattern are freed, and the literal map shrinks
    /// when it is mostly empty, so an index that churns through subscriptions does not keep
    /// the memory of its peak.
    pub fn remove(&mut self, pattern: &Pattern, key: &K) -> bool {
        let removed = if pattern.is_literal() {
            match self
                .literals
                .get_mut(pattern.as_str())
                .and_then(|keys| keys.remove(key))
            {
                None => false,
                Some(now_empty) => {
                    if now_empty {
                        self.literals.remove(pattern.as_str());
                        self.shrink_literals();
                    }
                    true
                }
            }
        } else {
            self.trie.remove(pattern, key)
        };
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Gives memory back once the literal map is a quarter full; shrinking to half full
    /// leaves room to grow again, so alternating inserts and removes cannot rehash each time.
    fn shrink_literals(&mut self) {
        let len = self.literals.len();
        if len == 0 {
            self.literals = HashMap::default();
        } else if len * 4 < self.literals.capacity() && self.literals.capacity() > 64 {
            self.literals.shrink_to(len * 2);
        }
    }

    /// Calls `f` once for every stored `(pattern, key)` pair whose pattern matches `subject`,
    /// in no particular order.
    pub fn for_each_match(&self, subject: &str, mut f: impl FnMut(&Pattern, &K)) {
        if !self.literals.is_empty()
            && let Some((literal, keys)) = self.literals.get_key_value(subject)
        {
            for key in keys.iter() {
                f(&literal.0, key);
            }
        }
        if self.trie.is_empty() {
            return;
        }
        let mut run = Run::new(&self.trie, subject);
        for &id in run.finish() {
            if let Some(t) = self.trie.node(id).terminal.as_deref() {
                for key in t.keys.iter() {
                    f(&t.pattern, key);
                }
            }
        }
    }

    /// The keys of every pair whose pattern matches `subject`, one entry per pair (a key
    /// stored under two matching patterns appears twice), in no particular order.
    pub fn matches(&self, subject: &str) -> Vec<K> {
        let mut out = Vec::new();
        self.for_each_match(subject, |_, key| out.push(key.clone()));
        out
    }

    /// Whether any stored pattern matches `subject`; cheaper than [`matches`](Self::matches)
    /// when only the yes/no answer is needed, as in deciding whether to send a report at all.
    pub fn any_match(&self, subject: &str) -> bool {
        if !self.literals.is_empty() && self.literals.contains_key(subject) {
            return true;
        }
        if self.trie.is_empty() {
            return false;
        }
        let mut run = Run::new(&self.trie, subject);
        run.finish()
            .iter()
            .any(|&id| self.trie.node(id).terminal.is_some())
    }
}

/// The wildcard patterns of a [`PatternIndex`] as a character trie.
#[derive(Clone)]
struct Trie<K> {
    /// Arena of trie nodes; node 0 is the root and is never freed.
    nodes: Vec<Node<K>>,
    /// Freed node slots, reused before the arena grows.
    free: Vec<NodeId>,
}

impl<K> Default for Trie<K> {
    fn default() -> Self {
        Self {
            nodes: vec![Node::new(NIL, '\0')],
            free: Vec::new(),
        }
    }
}

impl<K> Trie<K> {
    /// Whether no pattern is stored; pruning guarantees that a root without children means
    /// exactly that, since the empty pattern does not exist.
    fn is_empty(&self) -> bool {
        self.node(ROOT).is_leaf()
    }

    fn terminals(&self) -> impl Iterator<Item = (&Pattern, &Keys<K>)> {
        self.nodes
            .iter()
            .filter_map(|node| node.terminal.as_deref())
            .map(|t| (&t.pattern, &t.keys))
    }

    fn node(&self, id: NodeId) -> &Node<K> {
        &self.nodes[id as usize]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node<K> {
        &mut self.nodes[id as usize]
    }

    /// The node spelling `pattern`, if the trie has one.
    fn find(&self, pattern: &Pattern) -> Option<NodeId> {
        let mut id = ROOT;
        for c in pattern.as_str().chars() {
            let node = self.node(id);
            id = match c {
                '*' => node.star,
                '?' => node.any_one,
                _ => node.literal_child(c),
            };
            if id == NIL {
                return None;
            }
        }
        Some(id)
    }

    /// The child of `parent` along the edge `label`, created if missing.
    fn child_or_insert(&mut self, parent: NodeId, label: char) -> NodeId {
        let node = self.node(parent);
        let existing = match label {
            '*' => node.star,
            '?' => node.any_one,
            _ => node.literal_child(label),
        };
        if existing != NIL {
            return existing;
        }
        let fresh = Node::new(parent, label);
        let id = if let Some(id) = self.free.pop() {
            self.nodes[id as usize] = fresh;
            id
        } else {
            let id = NodeId::try_from(self.nodes.len()).unwrap_or(NIL);
            // Patterns are at most MAX_NAME_LEN bytes, so reaching this needs millions of
            // them; refusing to grow is better than corrupting ids.
            assert!(id != NIL, "PatternIndex is full");
            self.nodes.push(fresh);
            id
        };
        let node = self.node_mut(parent);
        match label {
            '*' => node.star = id,
            '?' => node.any_one = id,
            _ => {
                let at = node
                    .literals
                    .binary_search_by_key(&label, |&(l, _)| l)
                    .unwrap_or_else(|at| at);
                node.literals.insert(at, (label, id));
            }
        }
        id
    }

    /// Frees `id` and its ancestors for as long as they end no pattern and lead nowhere.
    fn prune(&mut self, mut id: NodeId) {
        while id != ROOT {
            let node = self.node(id);
            if node.terminal.is_some() || !node.is_leaf() {
                return;
            }
            let (parent, label) = (node.parent, node.label);
            let parent_node = self.node_mut(parent);
            match label {
                '*' => parent_node.star = NIL,
                '?' => parent_node.any_one = NIL,
                _ => {
                    if let Ok(i) = parent_node
                        .literals
                        .binary_search_by_key(&label, |&(l, _)| l)
                    {
                        parent_node.literals.remove(i);
                    }
                }
            }
            // Drop the child vector now rather than when the slot is reused.
            *self.node_mut(id) = Node::new(NIL, '\0');
            self.free.push(id);
            id = parent;
        }
    }
}

impl<K: Eq + Hash> Trie<K> {
    fn insert(&mut self, pattern: &Pattern, key: K) -> bool {
        let mut id = ROOT;
        for c in pattern.as_str().chars() {
            id = self.child_or_insert(id, c);
        }
        let node = self.node_mut(id);
        match node.terminal.as_mut() {
            Some(terminal) => terminal.keys.insert(key),
            None => {
                node.terminal = Some(Box::new(Terminal {
                    pattern: pattern.clone(),
                    keys: Keys::One(key),
                }));
                true
            }
        }
    }

    /// Removes the pair, pruning the nodes it alone needed; once the last pattern is gone
    /// the whole arena is released.
    fn remove(&mut self, pattern: &Pattern, key: &K) -> bool {
        let Some(id) = self.find(pattern) else {
            return false;
        };
        let Some(terminal) = self.node_mut(id).terminal.as_mut() else {
            return false;
        };
        match terminal.keys.remove(key) {
            None => false,
            Some(false) => true,
            Some(true) => {
                self.node_mut(id).terminal = None;
                self.prune(id);
                if self.is_empty() {
                    *self = Self::default();
                }
                true
            }
        }
    }
}

/// Active-set sizes up to this stay on the stack and are deduplicated by linear search.
const INLINE_STATES: usize = 16;

/// A list of node ids that lives on the stack while small, so a typical match allocates
/// nothing.
struct States {
    inline: [NodeId; INLINE_STATES],
    len: usize,
    spill: Vec<NodeId>,
}

impl States {
    fn new() -> Self {
        Self {
            inline: [NIL; INLINE_STATES],
            len: 0,
            spill: Vec::new(),
        }
    }

    #[inline]
    fn as_slice(&self) -> &[NodeId] {
        if self.len <= INLINE_STATES {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }

    #[inline]
    fn get(&self, i: usize) -> NodeId {
        if self.len <= INLINE_STATES {
            self.inline[i]
        } else {
            self.spill[i]
        }
    }

    #[inline]
    fn push(&mut self, id: NodeId) {
        if self.len < INLINE_STATES {
            self.inline[self.len] = id;
        } else {
            if self.len == INLINE_STATES {
                self.spill.clear();
                self.spill.extend_from_slice(&self.inline);
            }
            self.spill.push(id);
        }
        self.len += 1;
    }

    #[inline]
    fn clear(&mut self) {
        // The spill vector keeps its capacity for the next character.
        self.len = 0;
    }
}

/// One simulation of the trie as an NFA over a subject.
///
/// Because the trie is a tree, a literal or `?` node is entered only from its single parent,
/// which is itself in the active set at most once, so it needs no deduplication. A `*` node
/// can be entered twice in one step: by staying on it (it swallows the character) and by
/// re-entering its parent, whose `*` child is entered for free because `*` matches nothing
/// too. Only `*` nodes are therefore checked before being added.
struct Run<'a, K> {
    trie: &'a Trie<K>,
    subject: &'a str,
    current: States,
    next: States,
    /// Membership bitmap over the arena for `next`, used only once `next` outgrows linear
    /// search, so that thousands of live `*` states (hostile subscriptions such as `*a*`,
    /// `*b*`, …) cost linear rather than quadratic time per character.
    seen: Vec<u64>,
    seen_live: bool,
}

impl<'a, K> Run<'a, K> {
    fn new(trie: &'a Trie<K>, subject: &'a str) -> Self {
        let mut run = Self {
            trie,
            subject,
            current: States::new(),
            next: States::new(),
            seen: Vec::new(),
            seen_live: false,
        };
        run.enter(ROOT);
        run.advance();
        run
    }

    /// Reads the whole subject and returns the final active set.
    fn finish(&mut self) -> &[NodeId] {
        for c in self.subject.chars() {
            if self.current.len == 0 {
                break;
            }
            self.step(c);
        }
        self.current.as_slice()
    }

    fn step(&mut self, c: char) {
        let trie = self.trie;
        // Index rather than iterate: the loop body pushes into `self.next`.
        for i in 0..self.current.len {
            let id = self.current.get(i);
            let node = trie.node(id);
            if node.label == '*' {
                self.add_star(id);
            }
            let lit = node.literal_child(c);
            if lit != NIL {
                self.enter(lit);
            }
            if node.any_one != NIL {
                self.enter(node.any_one);
            }
        }
        self.advance();
    }

    /// Adds a node reached by consuming a character, plus its `*` child (which may match
    /// the empty string from here).
    fn enter(&mut self, id: NodeId) {
        self.push(id);
        let star = self.trie.node(id).star;
        if star != NIL {
            self.add_star(star);
        }
    }

    fn add_star(&mut self, id: NodeId) {
        if !self.seen_live && self.next.len >= INLINE_STATES {
            if self.seen.is_empty() {
                self.seen = vec![0; self.trie.nodes.len().div_ceil(64)];
            }
            for &n in self.next.as_slice() {
                self.seen[n as usize / 64] |= 1 << (n % 64);
            }
            self.seen_live = true;
        }
        let fresh = if self.seen_live {
            let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
            let fresh = self.seen[word] & bit == 0;
            self.seen[word] |= bit;
            fresh
        } else {
            !self.next.as_slice().contains(&id)
        };
        if fresh {
            self.next.push(id);
        }
    }

    fn push(&mut self, id: NodeId) {
        if self.seen_live {
            self.seen[id as usize / 64] |= 1 << (id % 64);
        }
        self.next.push(id);
    }

    /// Makes `next` the active set and empties the bitmap for the following step.
    fn advance(&mut self) {
        if self.seen_live {
            for &n in self.next.as_slice() {
                self.seen[n as usize / 64] &= !(1 << (n % 64));
            }
            self.seen_live = false;
        }
        std::mem::swap(&mut self.current, &mut self.next);
        self.next.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn p(text: &str) -> Pattern {
        Pattern::new(text).unwrap()
    }

    /// Reference matcher: the textbook recursive definition, exponential but obviously right.
    fn naive_glob(pattern: &[char], subject: &[char]) -> bool {
        match pattern.split_first() {
            None => subject.is_empty(),
            Some(('*', rest)) => (0..=subject.len()).any(|i| naive_glob(rest, &subject[i..])),
            Some((&pc, rest)) => match subject.split_first() {
                Some((&sc, srest)) => (pc == '?' || pc == sc) && naive_glob(rest, srest),
                None => false,
            },
        }
    }

    fn naive(pattern: &str, subject: &str) -> bool {
        let pc: Vec<char> = pattern.chars().collect();
        let sc: Vec<char> = subject.chars().collect();
        naive_glob(&pc, &sc)
    }

    fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
        v.sort();
        v
    }

    #[test]
    fn documented_examples() {
        let sys = p("system.*");
        assert!(sys.matches("system.time"));
        assert!(sys.matches("system.a.b"));
        assert!(!sys.matches("system"));
        assert!(sys.matches("system."));
        let q = p("a?c");
        assert!(q.matches("abc"));
        assert!(!q.matches("ac"));
        assert!(!q.matches("abbc"));
        let all = p("*");
        for s in ["", "x", "a.b.c", "ü"] {
            assert!(all.matches(s), "{s:?}");
        }
        assert!(p("*.temp").matches("sensor.1.temp"));
        assert!(!p("*.temp").matches("sensor.1.temperature"));
        assert!(p("a*b*c").matches("a.x.b.y.c"));
        assert!(!p("a*b*c").matches("a.x.c.y.b"));
    }

    #[test]
    fn stars_collapse() {
        assert_eq!(p("a**b"), p("a*b"));
        assert_eq!(p("a***b**").as_str(), "a*b*");
        assert_eq!(p("**").to_string(), "*");
        assert_eq!(p("a*?*b").as_str(), "a*?*b");
        let mut index = PatternIndex::new();
        assert!(index.insert(&p("a*b"), 1));
        assert!(!index.insert(&p("a**b"), 1));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn construction_and_literals() {
        assert!(Pattern::new("").is_err());
        assert!(Pattern::new("a\nb").is_err());
        assert!("x.y".parse::<Pattern>().unwrap().is_literal());
        assert!(!Pattern::try_from("x.*").unwrap().is_literal());
        assert!(!Pattern::try_from(String::from("x?")).unwrap().is_literal());
        assert_eq!(format!("{:?}", p("a**")), "Pattern(\"a*\")");
        assert_eq!(String::from(p("q")), "q");
    }

    #[test]
    fn question_mark_is_one_char_not_one_byte() {
        let q = p("a?c");
        assert!(q.matches("aéc"));
        assert!(q.matches("a😀c"));
        assert!(!q.matches("a😀😀c"));
        assert!(p("??").matches("é😀"));
        assert!(p("é*").matches("éa"));
        assert!(p("*😀").matches("x😀"));
        let mut index = PatternIndex::new();
        index.insert(&q, 1);
        index.insert(&p("??"), 2);
        index.insert(&p("*é"), 3);
        assert_eq!(index.matches("a😀c"), [1]);
        assert_eq!(index.matches("é😀"), [2]);
        assert_eq!(sorted(index.matches("xé")), [2, 3]);
    }

    #[test]
    fn empty_subject_does_not_panic() {
        let mut index = PatternIndex::new();
        assert!(index.matches("").is_empty());
        index.insert(&p("a"), 1);
        index.insert(&p("?"), 2);
        assert!(!index.any_match(""));
        index.insert(&p("*"), 3);
        assert_eq!(index.matches(""), [3]);
        assert!(!p("a").matches(""));
        assert!(!p("?").matches(""));
    }

    #[test]
    fn index_finds_every_match() {
        let mut index = PatternIndex::new();
        for (text, key) in [
            ("system.*", "sys"),
            ("system.time", "time"),
            ("*", "all"),
            ("*.time", "any-time"),
            ("sys?em.*", "q"),
            ("other", "other"),
        ] {
            assert!(index.insert(&p(text), key));
        }
        assert_eq!(
            sorted(index.matches("system.time")),
            ["all", "any-time", "q", "sys", "time"]
        );
        assert_eq!(sorted(index.matches("system")), ["all"]);
        assert!(index.any_match("nothing"));
        let mut seen = Vec::new();
        index.for_each_match("other", |pat, key| seen.push((pat.to_string(), *key)));
        assert_eq!(
            sorted(seen),
            [("*".into(), "all"), ("other".to_string(), "other")]
        );
    }

    #[test]
    fn same_key_under_two_patterns_is_reported_twice() {
        let mut index = PatternIndex::new();
        index.insert(&p("a.*"), 7);
        index.insert(&p("*.b"), 7);
        assert_eq!(index.matches("a.b"), [7, 7]);
        assert_eq!(index.iter().count(), 2);
    }

    #[test]
    fn insert_remove_bookkeeping() {
        let mut index = PatternIndex::new();
        assert!(index.is_empty());
        assert!(index.insert(&p("a.b"), 1));
        assert!(!index.insert(&p("a.b"), 1));
        assert!(index.insert(&p("a.b"), 2));
        assert!(index.insert(&p("a.*"), 1));
        assert!(index.insert(&p("a.?"), 1));
        assert_eq!(index.len(), 4);
        assert!(!index.remove(&p("a.b"), &3));
        assert!(!index.remove(&p("a.c"), &1));
        assert!(!index.remove(&p("a."), &1));
        assert!(!index.remove(&p("*"), &1));
        assert_eq!(index.len(), 4);
        assert!(index.remove(&p("a.b"), &1));
        assert!(!index.remove(&p("a.b"), &1));
        assert_eq!(index.matches("a.b").len(), 3);
        let nodes_before = index.live_nodes();
        assert!(index.remove(&p("a.?"), &1));
        assert_eq!(index.live_nodes(), nodes_before - 1, "the ? leaf is pruned");
        assert!(index.remove(&p("a.*"), &1));
        assert!(index.remove(&p("a.b"), &2));
        assert!(index.is_empty());
        assert_eq!(index.live_nodes(), 1);
        assert_eq!(index.trie.nodes.len(), 1, "the arena is released");
        assert!(index.matches("a.b").is_empty());
        assert!(index.insert(&p("a.b"), 1));
        assert_eq!(index.matches("a.b"), [1]);
    }

    #[test]
    fn pruning_keeps_shared_prefixes_and_reuses_slots() {
        let mut index = PatternIndex::new();
        index.insert(&p("a?c"), 1);
        index.insert(&p("a?d"), 1);
        index.insert(&p("x*"), 1);
        assert_eq!(index.live_nodes(), 7);
        assert!(index.remove(&p("a?c"), &1));
        assert_eq!(index.live_nodes(), 6);
        assert_eq!(index.matches("a.d"), [1]);
        assert!(index.remove(&p("a?d"), &1));
        assert_eq!(index.live_nodes(), 3);
        index.insert(&p("a?e"), 1);
        assert_eq!(index.trie.nodes.len(), 7, "freed slots are reused");
        assert_eq!(index.matches("abe"), [1]);
    }

    #[test]
    fn literal_patterns_bypass_the_trie() {
        let mut index = PatternIndex::new();
        for n in 0..100 {
            assert!(index.insert(&p(&format!("mem.{n}.4")), n));
        }
        assert!(index.insert(&p("mem.7.4"), 1_000));
        assert!(!index.insert(&p("mem.7.4"), 1_000));
        assert_eq!(index.live_nodes(), 1, "no trie node for a literal");
        assert_eq!(sorted(index.matches("mem.7.4")), [7, 1_000]);
        assert!(index.matches("mem.7").is_empty());
        // A wildcard that matches the same subject adds to the literal's keys.
        assert!(index.insert(&p("mem.7.?"), 7));
        assert_eq!(sorted(index.matches("mem.7.4")), [7, 7, 1_000]);
        let mut seen = Vec::new();
        index.for_each_match("mem.7.4", |pat, key| seen.push((pat.to_string(), *key)));
        assert_eq!(
            sorted(seen),
            [
                ("mem.7.4".to_owned(), 7),
                ("mem.7.4".to_owned(), 1_000),
                ("mem.7.?".to_owned(), 7)
            ]
        );
        assert!(index.remove(&p("mem.7.?"), &7));
        assert_eq!(index.live_nodes(), 1, "the trie is pruned back to its root");
        assert!(index.remove(&p("mem.7.4"), &7));
        assert!(!index.remove(&p("mem.7.4"), &7));
        assert_eq!(index.matches("mem.7.4"), [1_000]);
        assert_eq!(index.len(), 100);
        for n in 0..100 {
            assert_eq!(index.remove(&p(&format!("mem.{n}.4")), &n), n != 7);
        }
        assert!(index.remove(&p("mem.7.4"), &1_000));
        assert!(index.is_empty());
        assert_eq!(index.literals.capacity(), 0, "the map is released");
    }

    #[test]
    fn literal_map_shrinks_after_mass_removal() {
        let mut index = PatternIndex::new();
        for n in 0..10_000 {
            index.insert(&p(&format!("s.{n}")), n);
        }
        let peak = index.literals.capacity();
        for n in 10..10_000 {
            assert!(index.remove(&p(&format!("s.{n}")), &n));
        }
        assert!(index.literals.capacity() * 16 < peak, "{peak}");
        assert_eq!(sorted(index.matches("s.3")), [3]);
    }

    #[test]
    fn debug_shows_every_pattern_and_key() {
        let mut index = PatternIndex::new();
        index.insert(&p("a"), 1);
        index.insert(&p("b*"), 2);
        index.insert(&p("b*"), 3);
        let text = format!("{index:?}");
        assert!(text.contains("Pattern(\"a\"): {1}"), "{text}");
        assert!(
            text.contains("Pattern(\"b*\"): {2, 3}") || text.contains("Pattern(\"b*\"): {3, 2}"),
            "{text}"
        );
    }

    #[test]
    fn many_live_stars_use_the_bitmap() {
        // 200 patterns `*c*` keep 200 star states alive at once, well past the inline limit.
        let mut index = PatternIndex::new();
        let alphabet: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
        let mut expected = 0;
        for (i, &c) in alphabet.iter().enumerate() {
            for d in ['x', 'y', 'z'] {
                index.insert(&p(&format!("*{c}*{d}*")), i);
                expected += 1;
            }
        }
        let subject: String = alphabet.iter().collect::<String>() + "xyz";
        assert_eq!(index.matches(&subject).len(), expected);
        // Only `*x*y*`, `*x*z*` and `*y*z*` see their two letters in order.
        assert_eq!(index.matches("xyz").len(), 3);
        for (pat, key) in index.iter() {
            assert!(pat.matches(&subject), "{pat} {key}");
        }
    }

    #[test]
    fn index_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<PatternIndex<String>>();
        check::<Pattern>();
    }

    fn wildcard_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(prop::sample::select(vec!['a', 'b', '.', '*', '?']), 0..8)
            .prop_map(|cs| cs.into_iter().collect())
    }

    /// Short texts over a tiny alphabet, so that duplicates and subjects equal to a stored
    /// literal are common.
    fn literal_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(prop::sample::select(vec!['a', 'b', '.', 'é']), 1..4)
            .prop_map(|cs| cs.into_iter().collect())
    }

    /// A mix in which literal patterns (the index's map) and wildcard ones (its trie) both
    /// occur often; plain `wildcard_text` yields a literal only about one time in eight.
    fn pattern_text() -> impl Strategy<Value = String> {
        prop_oneof![wildcard_text(), literal_text()]
    }

    /// The random subjects plus every stored literal, so that the map's hits are exercised
    /// and not just its misses.
    fn with_literals<'a>(
        subjects: &'a [String],
        model: &'a HashSet<(Pattern, u8)>,
    ) -> impl Iterator<Item = &'a str> {
        subjects.iter().map(String::as_str).chain(
            model
                .iter()
                .filter(|(pat, _)| pat.is_literal())
                .map(|(pat, _)| pat.as_str()),
        )
    }

    fn subject_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(prop::sample::select(vec!['a', 'b', '.', 'é']), 0..10)
            .prop_map(|cs| cs.into_iter().collect())
    }

    fn expected(model: &HashSet<(Pattern, u8)>, subject: &str) -> Vec<u8> {
        sorted(
            model
                .iter()
                .filter(|(pat, _)| naive(pat.as_str(), subject))
                .map(|&(_, key)| key)
                .collect(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn pattern_matches_like_naive(text in wildcard_text(), subject in subject_text()) {
            if let Ok(pat) = Pattern::new(&text) {
                prop_assert_eq!(pat.matches(&subject), naive(&text, &subject));
            }
        }

        #[test]
        fn index_matches_like_naive(
            entries in proptest::collection::vec((pattern_text(), 0u8..4), 0..24),
            subjects in proptest::collection::vec(subject_text(), 1..8),
        ) {
            let mut index = PatternIndex::new();
            let mut model = HashSet::new();
            for (text, key) in entries {
                let Ok(pat) = Pattern::new(&text) else { continue };
                prop_assert_eq!(index.insert(&pat, key), model.insert((pat, key)));
            }
            prop_assert_eq!(index.len(), model.len());
            for subject in with_literals(&subjects, &model) {
                let want = expected(&model, subject);
                prop_assert_eq!(sorted(index.matches(subject)), want.clone(), "{:?}", subject);
                prop_assert_eq!(index.any_match(subject), !want.is_empty());
            }
        }

        #[test]
        fn index_survives_interleaved_insert_and_remove(
            ops in proptest::collection::vec((any::<bool>(), pattern_text(), 0u8..3), 0..96),
            subjects in proptest::collection::vec(subject_text(), 1..6),
        ) {
            let mut index = PatternIndex::new();
            let mut model = HashSet::new();
            for (insert, text, key) in ops {
                let Ok(pat) = Pattern::new(&text) else { continue };
                if insert {
                    prop_assert_eq!(index.insert(&pat, key), model.insert((pat, key)));
                } else {
                    prop_assert_eq!(index.remove(&pat, &key), model.remove(&(pat, key)));
                }
                prop_assert_eq!(index.len(), model.len());
            }
            for subject in with_literals(&subjects, &model) {
                prop_assert_eq!(sorted(index.matches(subject)), expected(&model, subject));
                let mut pairs = Vec::new();
                index.for_each_match(subject, |pat, &key| pairs.push((pat.clone(), key)));
                let want: Vec<(Pattern, u8)> = sorted(
                    model.iter().filter(|(pat, _)| naive(pat.as_str(), subject)).cloned().collect(),
                );
                prop_assert_eq!(sorted(pairs), want, "{:?}", subject);
            }
            let stored: HashSet<(Pattern, u8)> =
                index.iter().map(|(pat, &key)| (pat.clone(), key)).collect();
            prop_assert_eq!(&stored, &model);
            for (pat, key) in &model {
                prop_assert!(index.remove(pat, key));
            }
            prop_assert!(index.is_empty());
            prop_assert_eq!(index.live_nodes(), 1);
        }
    }
}
