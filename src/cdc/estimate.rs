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
//! `expected` rows from each call. It is a native function: called once
//! per buffer row, a SQL function around `generate_series` started and
//! ended an executor for its body at each call, 39% of a refresh whose
//! window held 1000 single-row statements.
//!
//! A statement row of one changed row is read without unnesting (a
//! function scan per buffer row built and dropped a tuplestore for each),
//! the others with it, split by `pgtrickle._one_change(n, share)` (n = 1),
//! whose support function tells the planner that `share` of the buffer
//! rows pass (for an unanalyzed buffer it took `n = 1` to keep 0.5% of
//! them, where all may).

use pgrx::pg_sys;
use pgrx::prelude::*;

#[no_mangle]
pub extern "C" fn pg_finfo_pgt_rows_estimate() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// The planner support function of `pgtrickle._change_rows(n, expected)`
/// and `pgtrickle._one_change(n, share)` (`pgtrickle._rows_estimate(internal)`
/// in SQL): to a request for the number of rows a call returns, the
/// constant `expected`; to a request for the selectivity of a condition,
/// the constant `share`; to any other request, or when the second
/// argument is not a constant of the expected type, nothing (NULL).
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
    // expressions, read by tag too, as are a SupportRequestSelectivity's
    // `args`. Only `rows` or `selectivity` of the request is written, as
    // the support function protocol asks.
    unsafe {
        let request = pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0).cast_mut_ptr::<pg_sys::Node>();
        if request.is_null() {
            return pg_sys::Datum::from(0);
        }
        match (*request).type_ {
            pg_sys::NodeTag::T_SupportRequestRows => {
                let rows = request as *mut pg_sys::SupportRequestRows;
                let call = (*rows).node;
                if call.is_null() || (*call).type_ != pg_sys::NodeTag::T_FuncExpr {
                    return pg_sys::Datum::from(0);
                }
                let Some(value) = second_constant((*(call as *mut pg_sys::FuncExpr)).args, pg_sys::INT8OID)
                else {
                    return pg_sys::Datum::from(0);
                };
                (*rows).rows = (value as i64).max(1) as f64;
                pg_sys::Datum::from(rows)
            }
            pg_sys::NodeTag::T_SupportRequestSelectivity => {
                let sel = request as *mut pg_sys::SupportRequestSelectivity;
                let Some(value) = second_constant((*sel).args, pg_sys::FLOAT8OID) else {
                    return pg_sys::Datum::from(0);
                };
                let share = f64::from_bits(value);
                (*sel).selectivity = if share.is_finite() { share.clamp(0.0, 1.0) } else { 0.5 };
                pg_sys::Datum::from(sel)
            }
            _ => pg_sys::Datum::from(0),
        }
    }
}

/// The value (as its 64 bits, passed by value) of the second of `args`
/// when it is a non-NULL constant of type `ty`.
///
/// # Safety
/// `args` is NULL or a List of expression nodes.
unsafe fn second_constant(args: *mut pg_sys::List, ty: pg_sys::Oid) -> Option<u64> {
    // SAFETY: per the contract, the list's elements are nodes, read by tag;
    // int8 and float8 constants are passed by value on 64-bit platforms.
    unsafe {
        let args = crate::hooks::list_ptrs::<pg_sys::Node>(args);
        let &arg = args.get(1)?;
        if arg.is_null() || (*arg).type_ != pg_sys::NodeTag::T_Const {
            return None;
        }
        let c = arg as *mut pg_sys::Const;
        if (*c).constisnull || (*c).consttype != ty {
            return None;
        }
        Some((*c).constvalue.value() as u64)
    }
}

#[no_mangle]
pub extern "C" fn pg_finfo_pgt_one_change() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `pgtrickle._one_change(n, share)`: does a statement row hold one
/// changed row (`n = 1`)? `share` is read by the planner only (see
/// [`pgt_rows_estimate`]).
///
/// # Safety
/// Called by PostgreSQL's function manager with a valid `fcinfo` of two
/// non-NULL arguments, an int4 and a float8 (the function is STRICT).
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn pgt_one_change(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: the first argument is an int4, passed by value.
    let n = unsafe { pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0).value() as i32 };
    pg_sys::Datum::from(n == 1)
}

#[no_mangle]
pub extern "C" fn pg_finfo_pgt_change_rows() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `pgtrickle._change_rows(n, expected)`: the rows 1..n (none when n < 1),
/// one per call in PostgreSQL's value-per-call protocol. `expected` is read
/// by the planner only (see [`pgt_rows_estimate`]).
///
/// # Safety
/// Called by PostgreSQL's function manager with a valid `fcinfo` of two
/// non-NULL int8 arguments (the function is STRICT).
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn pgt_change_rows(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: the multi-call protocol of funcapi.h: init_MultiFuncCall on
    // the first call (fn_extra still NULL; it raises an error when the
    // caller cannot take a set), per_MultiFuncCall on every call, and
    // end_MultiFuncCall once the rows are out. The first argument is an
    // int8, passed by value. resultinfo is the ReturnSetInfo
    // init_MultiFuncCall checked, whose isDone tells the executor whether
    // a row was returned.
    unsafe {
        if (*(*fcinfo).flinfo).fn_extra.is_null() {
            let first = pg_sys::init_MultiFuncCall(fcinfo);
            let n = pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0).value() as i64;
            (*first).max_calls = n.max(0) as u64;
        }
        let call = pg_sys::per_MultiFuncCall(fcinfo);
        let result = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        if (*call).call_cntr < (*call).max_calls {
            (*call).call_cntr += 1;
            (*result).isDone = pg_sys::ExprDoneCond::ExprMultipleResult;
            pg_sys::Datum::from((*call).call_cntr as i64)
        } else {
            pg_sys::end_MultiFuncCall(fcinfo, call);
            (*result).isDone = pg_sys::ExprDoneCond::ExprEndResult;
            (*fcinfo).isnull = true;
            pg_sys::Datum::from(0)
        }
    }
}
