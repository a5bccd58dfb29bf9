//! pg_trickle's configuration parameters (`pg_trickle.*`).

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// Above this fraction of the source's rows changed in one window, a
/// DIFFERENTIAL refresh recomputes in FULL instead (cheaper by then).
pub static DIFFERENTIAL_MAX_CHANGE_FRACTION: GucSetting<f64> = GucSetting::<f64>::new(0.25);

pub fn init() {
    GucRegistry::define_float_guc(
        c"pg_trickle.differential_max_change_fraction",
        c"Fraction of a source's rows changed above which a differential refresh runs in full.",
        c"When the changes waiting for a DIFFERENTIAL stream table exceed this fraction of \
          its source's estimated row count, that refresh recomputes the stream table instead; \
          the refresh history records it. 0 always recomputes; values above 1 never do.",
        &DIFFERENTIAL_MAX_CHANGE_FRACTION,
        0.0,
        1000.0,
        GucContext::Userset,
        GucFlags::default(),
    );
}
