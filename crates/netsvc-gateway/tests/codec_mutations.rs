//! The fuzz targets' properties (fuzz/fuzz_targets/{xmlrpc,netrpc}_decode.rs), checked on
//! the committed seeds and on a few thousand deterministic mutations of them, so that
//! `cargo test` covers them without cargo-fuzz: no panic, and whatever decodes encodes to a
//! fixed point.

use std::path::PathBuf;

use netsvc_gateway::codec::{XmlLimits, netrpc, xmlrpc};
use netsvc_proto::value::Value;

const LIMITS: XmlLimits = XmlLimits {
    max_depth: 64,
    max_elements: 10_000,
};

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.expect("entry").path()).expect("seed"))
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 3, "too few seeds in {}", dir.display());
    seeds
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap_or(0)
    }
}

const PIECES: &[&[u8]] = &[
    b"&#13;",
    b"&#10;",
    b"&#9;",
    b"&#1;",
    b"&#0;",
    b"&#xD800;",
    b"&lt;",
    b"&amp;",
    b"&bogus;",
    b"\r",
    b"\n",
    b"\t",
    b"\0",
    b"\xff",
    b"<",
    b">",
    b"'",
    b"\"",
    b"<value>",
    b"</value>",
    b"<nil/>",
    b"<scalar>",
    b"</scalar>",
    b"<![CDATA[x]]>",
    b"<!-- -->",
    b"<?pi?>",
    b"nan",
    b"-inf",
    b"1e400",
    b"99999999999999999999999",
    b" name='k'",
    b" type='xsd:int'",
];

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(3) {
        let at = rng.below(data.len() + 1);
        match rng.below(4) {
            0 => {
                let piece = PIECES[rng.below(PIECES.len())];
                data.splice(at..at, piece.iter().copied());
            }
            1 => {
                let end = (at + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            2 if at < data.len() => data[at] = u8::try_from(rng.below(256)).unwrap_or(0),
            _ => {
                let end = (at + rng.below(32)).min(data.len());
                let copy = data[at..end].to_vec();
                data.splice(at..at, copy);
            }
        }
    }
    data
}

fn check_xmlrpc(data: &[u8]) {
    let Ok(call) = xmlrpc::decode_call(data, LIMITS) else {
        return;
    };
    let first = xmlrpc::encode_call(&call);
    let again = xmlrpc::decode_call(first.as_bytes(), XmlLimits::DEFAULT).unwrap_or_else(|e| {
        panic!(
            "an encoded call does not decode ({e}): {first:?}\nfrom {:?}",
            String::from_utf8_lossy(data)
        )
    });
    assert_eq!(
        first,
        xmlrpc::encode_call(&again),
        "from {:?}",
        String::from_utf8_lossy(data)
    );
}

fn check_netrpc(data: &[u8]) {
    let Ok(value) = netrpc::decode(data, LIMITS) else {
        return;
    };
    let first = netrpc::encode(&value);
    let again = netrpc::decode(first.as_bytes(), XmlLimits::DEFAULT).unwrap_or_else(|e| {
        panic!(
            "an encoded value does not decode ({e}): {first:?}\nfrom {:?}",
            String::from_utf8_lossy(data)
        )
    });
    assert_eq!(
        first,
        netrpc::encode(&again),
        "from {:?}",
        String::from_utf8_lossy(data)
    );
    if let Ok(params) = netrpc::decode_params(data, LIMITS) {
        assert_eq!(netrpc::encode(&Value::List(params)), first);
    }
}

#[test]
fn xmlrpc_seeds_and_mutations() {
    let seeds = seeds("xmlrpc_decode");
    let mut rng = Rng(0x5EED_0001);
    let mut decoded = 0;
    for seed in &seeds {
        assert!(
            xmlrpc::decode_call(seed, LIMITS).is_ok(),
            "seed {:?} does not decode",
            String::from_utf8_lossy(seed)
        );
        for _ in 0..2000 {
            let data = mutate(seed, &mut rng);
            decoded += usize::from(xmlrpc::decode_call(&data, LIMITS).is_ok());
            check_xmlrpc(&data);
        }
    }
    // The mutations reach past the parser's error paths.
    assert!(decoded > 100, "only {decoded} mutations decoded");
}

#[test]
fn netrpc_seeds_and_mutations() {
    let seeds = seeds("netrpc_decode");
    let mut rng = Rng(0x5EED_0002);
    let mut decoded = 0;
    for seed in &seeds {
        assert!(
            netrpc::decode(seed, LIMITS).is_ok(),
            "seed {:?} does not decode",
            String::from_utf8_lossy(seed)
        );
        for _ in 0..2000 {
            let data = mutate(seed, &mut rng);
            decoded += usize::from(netrpc::decode(&data, LIMITS).is_ok());
            check_netrpc(&data);
        }
    }
    assert!(decoded > 100, "only {decoded} mutations decoded");
}
