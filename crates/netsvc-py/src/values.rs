//! Python objects ⇄ netsvc values.
//!
//! | Python | netsvc | back in Python |
//! |---|---|---|
//! | `None` | `None` | `None` |
//! | `bool` | `Bool` | `bool` |
//! | `int` in `-2**63 ..= 2**64-1` | `Int` | `int` (others: `OverflowError`) |
//! | `float` | `Float` (bit-exact) | `float` |
//! | `str` | `String` | `str` |
//! | `bytes`, `bytearray`, `memoryview` | `Bytes` | `bytes` |
//! | `list`, `tuple` | `List` | `list` |
//! | `dict` with `str` keys | `Map` | `dict` (other keys: `TypeError`) |
//! | `datetime.datetime` | `DateTime` (offset kept if aware) | `datetime.datetime` |
//! | `datetime.date` | `Date` | `datetime.date` |
//! | `datetime.time` (naive) | `Time` | `datetime.time` |
//! | `datetime.timedelta` | `Duration` | `datetime.timedelta` |
//! | `netsvc.Opaque` | `Opaque` | `netsvc.Opaque` |
//!
//! Anything else is a `TypeError` naming its type. Nesting deeper than the value limits'
//! depth (64) is a `ValueError` (this also stops reference cycles).

use std::collections::BTreeMap;

use netsvc::Value;
use netsvc::value::Limits;
use netsvc::value::{Date, DateTime, Duration, Opaque, Time};
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMemoryView, PyString, PyTuple,
};

const MAX_DEPTH: usize = Limits::DEFAULT.max_depth;

/// An application-defined value: a type name and bytes (the original's `Opaque(type, data)`).
#[pyclass(module = "netsvc._netsvc", name = "Opaque", frozen, eq)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PyOpaque {
    #[pyo3(get, name = "type")]
    type_name: String,
    #[pyo3(get)]
    data: Vec<u8>,
}

#[pymethods]
impl PyOpaque {
    #[new]
    #[pyo3(signature = (r#type, data))]
    fn new(r#type: String, data: &Bound<'_, PyAny>) -> PyResult<Self> {
        let data = if let Ok(s) = data.cast::<PyString>() {
            s.to_str()?.as_bytes().to_vec()
        } else {
            bytes_of(data)?
                .ok_or_else(|| PyTypeError::new_err("Opaque data must be bytes or str"))?
        };
        Ok(Self {
            type_name: r#type,
            data,
        })
    }

    fn __repr__(&self) -> String {
        format!("Opaque({:?}, {} bytes)", self.type_name, self.data.len())
    }
}

struct DateTypes {
    datetime: Py<PyAny>,
    date: Py<PyAny>,
    time: Py<PyAny>,
    timedelta: Py<PyAny>,
    timezone: Py<PyAny>,
}

static DATE_TYPES: PyOnceLock<DateTypes> = PyOnceLock::new();

fn date_types(py: Python<'_>) -> PyResult<&DateTypes> {
    DATE_TYPES.get_or_try_init(py, || {
        let m = py.import("datetime")?;
        Ok(DateTypes {
            datetime: m.getattr("datetime")?.unbind(),
            date: m.getattr("date")?.unbind(),
            time: m.getattr("time")?.unbind(),
            timedelta: m.getattr("timedelta")?.unbind(),
            timezone: m.getattr("timezone")?.unbind(),
        })
    })
}

fn bytes_of(obj: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Some(b.as_bytes().to_vec()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Some(b.to_vec()));
    }
    if obj.cast::<PyMemoryView>().is_ok() {
        let b = obj.call_method0("tobytes")?;
        return Ok(Some(b.cast::<PyBytes>()?.as_bytes().to_vec()));
    }
    Ok(None)
}

fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Converts a Python object into a value.
pub(crate) fn to_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    convert(obj, 0)
}

/// Converts a Python sequence of arguments into an argument list.
pub(crate) fn to_args(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Value>> {
    let mut out = Vec::new();
    for item in obj.try_iter()? {
        out.push(convert(&item?, 1)?);
    }
    Ok(out)
}

fn convert(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::None);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.cast::<PyInt>().is_ok() {
        if let Ok(n) = obj.extract::<i64>() {
            return Ok(Value::from(n));
        }
        if let Ok(n) = obj.extract::<u64>() {
            return Ok(Value::from(n));
        }
        return Err(PyOverflowError::new_err(format!(
            "integer {} is outside the range netsvc carries (-2**63 to 2**64-1)",
            obj.str()?
        )));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::Float(f.value()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_str()?.to_owned()));
    }
    if let Some(b) = bytes_of(obj)? {
        return Ok(Value::Bytes(b));
    }
    let nested = depth + 1;
    if obj.cast::<PyList>().is_ok() || obj.cast::<PyTuple>().is_ok() {
        check_depth(nested)?;
        let mut out = Vec::new();
        for item in obj.try_iter()? {
            out.push(convert(&item?, nested)?);
        }
        return Ok(Value::List(out));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        check_depth(nested)?;
        let mut out = BTreeMap::new();
        for (k, v) in d.iter() {
            let Ok(key) = k.cast::<PyString>() else {
                return Err(PyTypeError::new_err(format!(
                    "netsvc maps have str keys; this dict has a key of type {}",
                    k.get_type().name()?
                )));
            };
            out.insert(key.to_str()?.to_owned(), convert(&v, nested)?);
        }
        return Ok(Value::Map(out));
    }
    if let Ok(o) = obj.cast::<PyOpaque>() {
        let o = o.get();
        return Ok(Value::Opaque(Opaque::new(
            o.type_name.clone(),
            o.data.clone(),
        )));
    }
    let py = obj.py();
    let types = date_types(py)?;
    // datetime before date: a datetime is a date.
    if obj.is_instance(types.datetime.bind(py))? {
        let date = date_of(obj)?;
        let time = time_of(obj)?;
        let offset = obj.call_method0("utcoffset")?;
        let offset = if offset.is_none() {
            None
        } else {
            let secs: f64 = offset.call_method0("total_seconds")?.extract()?;
            #[allow(clippy::cast_possible_truncation)] // utcoffset is within ±24 h
            Some(secs.round() as i32)
        };
        return DateTime::new(date, time, offset)
            .map(Value::DateTime)
            .map_err(value_error);
    }
    if obj.is_instance(types.date.bind(py))? {
        return Ok(Value::Date(date_of(obj)?));
    }
    if obj.is_instance(types.time.bind(py))? {
        if !obj.getattr("tzinfo")?.is_none() {
            return Err(PyValueError::new_err(
                "netsvc times of day carry no time zone: pass a naive datetime.time",
            ));
        }
        return Ok(Value::Time(time_of(obj)?));
    }
    if obj.is_instance(types.timedelta.bind(py))? {
        let days: i64 = obj.getattr("days")?.extract()?;
        let seconds: i64 = obj.getattr("seconds")?.extract()?;
        let micros: i64 = obj.getattr("microseconds")?.extract()?;
        let total = i128::from(days) * 86_400_000_000
            + i128::from(seconds) * 1_000_000
            + i128::from(micros);
        let secs = i64::try_from(total / 1_000_000).map_err(value_error)?;
        let nanos = i32::try_from((total % 1_000_000) * 1000).map_err(value_error)?;
        return Duration::new(secs, nanos)
            .map(Value::Duration)
            .map_err(value_error);
    }
    Err(PyTypeError::new_err(format!(
        "netsvc cannot carry a value of type {} (None, bool, int, float, str, bytes, list, \
         tuple, dict with str keys, datetime types and netsvc.Opaque can)",
        obj.get_type().name()?
    )))
}

fn check_depth(depth: usize) -> PyResult<()> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "value nested deeper than the limit of {MAX_DEPTH} levels (or it contains itself)"
        )));
    }
    Ok(())
}

fn date_of(obj: &Bound<'_, PyAny>) -> PyResult<Date> {
    let y: i32 = obj.getattr("year")?.extract()?;
    let m: u8 = obj.getattr("month")?.extract()?;
    let d: u8 = obj.getattr("day")?.extract()?;
    Date::new(y, m, d).map_err(value_error)
}

fn time_of(obj: &Bound<'_, PyAny>) -> PyResult<Time> {
    let h: u8 = obj.getattr("hour")?.extract()?;
    let m: u8 = obj.getattr("minute")?.extract()?;
    let s: u8 = obj.getattr("second")?.extract()?;
    let us: u32 = obj.getattr("microsecond")?.extract()?;
    Time::new(h, m, s, us * 1000).map_err(value_error)
}

/// Converts a value into a Python object.
pub(crate) fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::None => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u)) => u.into_pyobject(py)?.into_any(),
            (None, None) => n.to_i128().into_pyobject(py)?.into_any(),
        },
        Value::Float(f) => PyFloat::new(py, *f).into_any(),
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Bytes(b) => PyBytes::new(py, b).into_any(),
        Value::List(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Map(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, to_py(py, v)?)?;
            }
            dict.into_any()
        }
        Value::Date(d) => date_types(py)?
            .date
            .bind(py)
            .call1((d.year(), d.month(), d.day()))?,
        Value::Time(t) => date_types(py)?.time.bind(py).call1((
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond() / 1000,
        ))?,
        Value::DateTime(dt) => {
            let types = date_types(py)?;
            let (d, t) = (dt.date(), dt.time());
            let tz = match dt.offset_seconds() {
                None => py.None().into_bound(py),
                Some(secs) => {
                    let delta = types.timedelta.bind(py).call1((0, secs))?;
                    types.timezone.bind(py).call1((delta,))?
                }
            };
            types.datetime.bind(py).call1((
                d.year(),
                d.month(),
                d.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.nanosecond() / 1000,
                tz,
            ))?
        }
        Value::Duration(d) => {
            date_types(py)?
                .timedelta
                .bind(py)
                .call1((0, d.seconds(), d.nanoseconds() / 1000))?
        }
        Value::Opaque(o) => Bound::new(
            py,
            PyOpaque {
                type_name: o.type_name.clone(),
                data: o.data.clone(),
            },
        )?
        .into_any(),
    })
}

/// Converts an argument list into a Python list.
pub(crate) fn args_to_py<'py>(py: Python<'py>, args: &[Value]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for a in args {
        list.append(to_py(py, a)?)?;
    }
    Ok(list)
}
