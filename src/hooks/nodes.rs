//! Reading and building PostgreSQL parse nodes: lists, strings, DefElems.
//!
//! Every function here is `unsafe` with one contract: the pointers it is
//! given are NULL or valid nodes of the stated type, allocated in a memory
//! context that outlives the call (the parse tree's).

use std::ffi::{c_char, c_void, CStr};

use pgrx::pg_sys;

use crate::catalog::options::{our_key, OptionChange};

/// The elements of a pointer `List` (NIL gives an empty vector).
///
/// # Safety
/// `list` is NIL or a valid pointer List whose cells hold `T` pointers.
pub unsafe fn list_ptrs<T>(list: *mut pg_sys::List) -> Vec<*mut T> {
    if list.is_null() {
        return Vec::new();
    }
    // SAFETY: a non-NIL List has `length` initialised cells in `elements`.
    unsafe {
        let len = (*list).length as usize;
        (0..len).map(|i| (*(*list).elements.add(i)).ptr_value as *mut T).collect()
    }
}

/// A copy of an expression tree in which `replace` decides about each node
/// first: `Some(node)` stands for it (its children are not visited),
/// `None` copies it with its children visited the same way
/// (PostgreSQL's expression_tree_mutator, which copies only what changes
/// on the way down).
///
/// # Safety
/// `node` is NULL or a valid expression tree; `replace` returns NULL or
/// valid nodes allocated in the current memory context.
pub unsafe fn mutate<F>(node: *mut pg_sys::Node, mut replace: F) -> *mut pg_sys::Node
where
    F: FnMut(*mut pg_sys::Node) -> Option<*mut pg_sys::Node>,
{
    // SAFETY: the context is `replace`, alive for the whole call, and only
    // read back as `F` by the callback instantiated for it.
    unsafe { mutate_node::<F>(node, &mut replace as *mut F as *mut c_void) }
}

/// expression_tree_mutator callback for [`mutate`]; `context` is its `F`.
unsafe extern "C-unwind" fn mutate_node<F>(node: *mut pg_sys::Node, context: *mut c_void) -> *mut pg_sys::Node
where
    F: FnMut(*mut pg_sys::Node) -> Option<*mut pg_sys::Node>,
{
    if node.is_null() {
        return node;
    }
    // SAFETY: `context` is the `F` that `mutate` passed, which outlives
    // the walk; the mutator is given this same callback and context.
    unsafe {
        let replace = &mut *(context as *mut F);
        match replace(node) {
            Some(replaced) => replaced,
            None => pg_sys::expression_tree_mutator_impl(node, Some(mutate_node::<F>), context),
        }
    }
}

/// A copy of an expression in which the columns of range table entry
/// `from` (at its own query level) read entry `to` instead, as
/// PostgreSQL's ChangeVarNodes does for Vars (the rest is shared). Their
/// names as written (`varnosyn`, `varattnosyn`, which the deparser prefers:
/// a join's alias and its column position) become the table's own.
///
/// # Safety
/// `node` is NULL or a valid expression tree without sublinks.
pub unsafe fn renumbered(node: *mut pg_sys::Node, from: u32, to: u32) -> *mut pg_sys::Node {
    // SAFETY: each Var is copied before it is changed; the copy lives in
    // the current memory context.
    unsafe {
        mutate(node, |n| {
            if (*n).type_ != pg_sys::NodeTag::T_Var {
                return None;
            }
            let var = n as *mut pg_sys::Var;
            if (*var).varlevelsup != 0 || (*var).varno as u32 != from {
                return None;
            }
            let copy = pg_sys::copyObjectImpl(var.cast()) as *mut pg_sys::Var;
            (*copy).varno = to as i32;
            (*copy).varnosyn = to;
            (*copy).varattnosyn = (*copy).varattno;
            (*copy).varnullingrels = std::ptr::null_mut();
            Some(copy.cast())
        })
    }
}

/// Visit an expression tree depth first (PostgreSQL's
/// expression_tree_walker): `visit` sees each node and returns whether
/// to visit its children. A SubLink's subquery is seen as a Query node,
/// whose insides are not visited.
///
/// # Safety
/// `node` is NULL or a valid expression tree.
pub unsafe fn walk<F>(node: *mut pg_sys::Node, mut visit: F)
where
    F: FnMut(*mut pg_sys::Node) -> bool,
{
    // SAFETY: as in `mutate`: the context is `visit`, alive for the walk.
    unsafe {
        walk_node::<F>(node, &mut visit as *mut F as *mut c_void);
    }
}

/// expression_tree_walker callback for [`walk`]; `context` is its `F`.
unsafe extern "C-unwind" fn walk_node<F>(node: *mut pg_sys::Node, context: *mut c_void) -> bool
where
    F: FnMut(*mut pg_sys::Node) -> bool,
{
    if node.is_null() {
        return false;
    }
    // SAFETY: `context` is the `F` that `walk` passed; a Query node is not
    // entered (expression_tree_walker does not enter one either).
    unsafe {
        let visit = &mut *(context as *mut F);
        if visit(node) && (*node).type_ != pg_sys::NodeTag::T_Query {
            return pg_sys::expression_tree_walker_impl(node, Some(walk_node::<F>), context);
        }
        false
    }
}

/// Turn a range table entry into a reference to the WITH query `name`,
/// `levels_up` query levels above it, for a deparse that reads a stand-in
/// in its place (ruleutils prints the name; the entry's column names stay).
///
/// # Safety
/// `rte` is a valid RangeTblEntry of a Query the caller may change.
pub unsafe fn as_cte_reference(rte: *mut pg_sys::RangeTblEntry, name: &str, levels_up: u32) -> Option<()> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: rte is valid and writable; the name is palloc'd in the
    // current memory context.
    unsafe {
        (*rte).rtekind = pg_sys::RTEKind::RTE_CTE;
        (*rte).ctename = pg_sys::pstrdup(name.as_ptr());
        (*rte).ctelevelsup = levels_up;
        (*rte).self_reference = false;
    }
    Some(())
}

/// A new pointer `List` in the current memory context.
pub unsafe fn list_from_ptrs<T>(items: &[*mut T]) -> *mut pg_sys::List {
    let mut list: *mut pg_sys::List = std::ptr::null_mut();
    for &item in items {
        // SAFETY: lappend accepts NIL and allocates in CurrentMemoryContext.
        list = unsafe { pg_sys::lappend(list, item as *mut c_void) };
    }
    list
}

/// A C string as an owned Rust string (NULL gives `None`).
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string.
pub unsafe fn cstr(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        // SAFETY: the caller passes a NUL-terminated string or NULL.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

/// Split a `WITH (…)` / `SET (…)` / `RESET (…)` list into our changes and the
/// DefElems that belong to PostgreSQL.
pub unsafe fn split_options(
    list: *mut pg_sys::List,
    is_reset: bool,
) -> (Vec<OptionChange>, Vec<*mut pg_sys::DefElem>) {
    let mut ours = Vec::new();
    let mut others = Vec::new();
    // SAFETY: the caller passes an options list (NIL or a List of DefElem).
    let defs = unsafe { list_ptrs::<pg_sys::DefElem>(list) };
    for def in defs {
        // SAFETY: every element of an options list is a DefElem.
        let (ns, name) = unsafe { (cstr((*def).defnamespace), cstr((*def).defname)) };
        let Some(key) = name.as_deref().and_then(|n| our_key(ns.as_deref(), n)) else {
            others.push(def);
            continue;
        };
        // SAFETY: `def` is a DefElem (see above).
        let bare = unsafe { (*def).arg }.is_null();
        if is_reset {
            ours.push(OptionChange::Reset { key });
        } else if bare {
            ours.push(OptionChange::Set { key, value: "true".into() });
        } else {
            // SAFETY: defGetString accepts every node type a reloption value
            // can have and raises an ERROR for anything else.
            let value = unsafe { cstr(pg_sys::defGetString(def)) }.unwrap_or_default();
            ours.push(OptionChange::Set { key, value });
        }
    }
    (ours, others)
}

/// A zeroed node of type `T` with its tag set (makeNode).
///
/// # Safety
/// `tag` is `T`'s node tag.
pub unsafe fn make_node<T>(tag: pg_sys::NodeTag) -> *mut T {
    // SAFETY: palloc0 returns zeroed memory of the size asked for, in the
    // current memory context; every node starts with its NodeTag.
    unsafe {
        let node = pg_sys::palloc0(std::mem::size_of::<T>()) as *mut T;
        (*(node as *mut pg_sys::Node)).type_ = tag;
        node
    }
}

/// Deep copy of a node (`copyObject`).
pub unsafe fn copy_node<T>(node: *mut T) -> *mut T {
    // SAFETY: copyObjectImpl copies any node tree into CurrentMemoryContext.
    unsafe { pg_sys::copyObjectImpl(node as *const c_void) as *mut T }
}

/// The OID of the relation a RangeVar names, without locking it.
pub unsafe fn range_var_relid(rv: *mut pg_sys::RangeVar) -> Option<pg_sys::Oid> {
    if rv.is_null() {
        return None;
    }
    // SAFETY: with RVR_MISSING_OK a missing relation gives InvalidOid; a
    // missing schema also gives InvalidOid rather than an ERROR.
    let oid = unsafe {
        pg_sys::RangeVarGetRelidExtended(
            rv,
            pg_sys::NoLock as i32,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    };
    (oid != pg_sys::InvalidOid).then_some(oid)
}
