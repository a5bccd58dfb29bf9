//! The planner's estimate of a change buffer's rows.
//!
//! A buffer row holds one statement's changed rows as arrays, read back
//! by `ROWS FROM (unnest(...), ..., series(1, n))` (see `buffer::rows_sql`).
//! The planner cannot see `n`: it takes a set-returning function of
//! non-constant arguments to return 1000 rows (10 for `unnest`), whatever
//! the window holds. Joins of change rows were then planned for a thousand
//! rows where there were 60,000 (a nested loop of two change sets, TPC-H
//! Q10 at 1%) or for a thousand where there were 15 (the decoding redone
//! inside a loop). A refresh knows how many rows the window holds:
//! `pgtrickle._change_rows(n, expected)` returns `1..n` as `generate_series`
//! does, and its support function (below) tells the planner to expect
//! `expected` rows from each call.

use pgrx::pg_sys;
use pgrx::prelude::*;

#[no_mangle]
pub extern "C" fn pg_finfo_pgt_rows_estimate() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// The planner support function of `pgtrickle._change_rows(n, expected)`
/// (`pgtrickle._rows_estimate(internal)` in SQL): to a request for the
/// number of rows a call returns, the constant `expected`; to any other
/// request, or when `expected` is not a constant, nothing (NULL).
///
/// # Safety
/// Called by PostgreSQL's function manager with a valid `fcinfo`, whose
/// one argument is a planner support request node.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn pgt_rows_estimate(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: the argument of a support function is a pointer to a Node
    // (a SupportRequest*), read by its tag; a SupportRequestRows's `node`
    // is the FuncExpr being estimated, whose args are a List of
    // expressions, read by tag too. Only `rows` of the request is written,
    // as the support function protocol asks.
    unsafe {
        let request = pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0).cast_mut_ptr::<pg_sys::Node>();
        if request.is_null() || (*request).type_ != pg_sys::NodeTag::T_SupportRequestRows {
            return pg_sys::Datum::from(0);
        }
        let rows = request as *mut pg_sys::SupportRequestRows;
        let call = (*rows).node;
        if call.is_null() || (*call).type_ != pg_sys::NodeTag::T_FuncExpr {
            return pg_sys::Datum::from(0);
        }
        let args = crate::hooks::list_ptrs::<pg_sys::Node>((*(call as *mut pg_sys::FuncExpr)).args);
        let Some(&expected) = args.get(1) else { return pg_sys::Datum::from(0) };
        if expected.is_null() || (*expected).type_ != pg_sys::NodeTag::T_Const {
            return pg_sys::Datum::from(0);
        }
        let c = expected as *mut pg_sys::Const;
        if (*c).constisnull || (*c).consttype != pg_sys::INT8OID {
            return pg_sys::Datum::from(0);
        }
        let value = (*c).constvalue.value() as i64;
        (*rows).rows = value.max(1) as f64;
        pg_sys::Datum::from(rows)
    }
}
