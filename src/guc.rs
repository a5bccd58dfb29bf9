//! pg_trickle's configuration parameters (`pg_trickle.*`).

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// Above this fraction of the source's rows changed in one window, a
/// DIFFERENTIAL refresh recomputes in FULL instead (cheaper by then).
pub static DIFFERENTIAL_MAX_CHANGE_FRACTION: GucSetting<f64> = GucSetting::<f64>::new(0.25);

pub fn init() {
    GucRegistry::define_float_guc(
        c"pg_trickle.differential_max_change_fraction",
        c"Fraction of a source's rows changed above which a differential refresh runs in full.",
        c"A DIFFERENTIAL refresh recomputes the stream table instead when the change rows \
          waiting for it (an UPDATE counts twice) exceed this fraction of its sources' \
          estimated row count, or the keys they affect exceed this fraction of the stream \
          table's rows; the refresh history records why. Large values (e.g. 1000) keep \
          refreshes differential.",
        &DIFFERENTIAL_MAX_CHANGE_FRACTION,
        0.0,
        1000.0,
        GucContext::Userset,
        GucFlags::default(),
    );
}
