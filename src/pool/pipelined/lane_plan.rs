//! What a lane's request does with the connection's prepared statements (its plan: the
//! statement it prepares, the one it runs, the one whose columns its answer describes), and
//! what its answer changes in the connection's names: columns confirmed, stale names
//! forgotten and closed.

use std::sync::Arc;

use crate::conn::{Outcome, PipelineNames};

/// What a request does with the connection's prepared statements.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// The statement it prepares (SQL, name): if its Parse fails, the name is forgotten;
    /// while later requests use it, it is sent even if its caller left.
    pub(super) prepares: Option<(Arc<str>, Arc<str>)>,
    /// The name of the statement it runs: forgotten if the server no longer knows it, or
    /// its plan is stale.
    pub(super) uses: Option<Arc<str>>,
    /// The statement whose result columns its answer describes on this connection (a
    /// Describe of the statement, or of the portal bound to it).
    pub(super) confirms: Option<Arc<str>>,
}

/// The plans of a request's statements: one, or one per statement of a batch.
#[derive(Debug, Default)]
pub(super) struct Plans {
    first: Plan,
    more: Vec<Plan>,
}

impl From<Plan> for Plans {
    fn from(first: Plan) -> Plans {
        Plans {
            first,
            more: Vec::new(),
        }
    }
}

impl Plans {
    /// One plan per statement, in order.
    pub(super) fn many(plans: Vec<Plan>) -> Plans {
        let mut it = plans.into_iter();
        Plans {
            first: it.next().unwrap_or_default(),
            more: it.collect(),
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Plan> {
        std::iter::once(&self.first).chain(&self.more)
    }

    /// Whether a statement of the request runs the statement named `name`.
    pub(super) fn uses(&self, name: &Arc<str>) -> bool {
        self.iter().any(|p| p.uses.as_ref() == Some(name))
    }
}

/// Whether `outcome` changes what the connection's names say: a description to keep, a
/// statement to forget. Only then is the lane's queue locked for [`apply`].
pub(super) fn changes_names(plans: &Plans, outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Batch(_) => true,
        Outcome::Executed(x) if x.error.is_some() => true,
        Outcome::Described(Err(_)) => true,
        Outcome::Executed(_) | Outcome::Described(Ok(_)) => {
            plans.iter().any(|p| p.confirms.is_some())
        }
        Outcome::Reset { .. } => false,
    }
}

/// What `outcome` says of the statements `plans` prepared and ran, applied to the
/// connection's `names`; names to close with the next request go to `to_close`.
pub(super) fn apply(
    names: &mut PipelineNames,
    to_close: &mut Vec<Arc<str>>,
    plans: &Plans,
    outcome: &Outcome,
) {
    forget_stale(names, to_close, plans, outcome);
    confirm(names, plans, outcome);
}

/// A request that described its statements' result columns: the connection's names for
/// them keep them, and later requests on the connection decode with them.
fn confirm(names: &mut PipelineNames, plans: &Plans, outcome: &Outcome) {
    if let Outcome::Batch(answers) = outcome {
        for (plan, columns) in plans.iter().zip(answers.columns()) {
            if let (Some(name), Some(columns)) = (&plan.confirms, columns) {
                names.confirm(name, None, Some(columns));
            }
        }
        return;
    }
    let Some(name) = &plans.first.confirms else {
        return;
    };
    // A Describe of the statement confirms its parameters; its columns come from the
    // first execution's portal description, with the types the pool looked up kept.
    let (params, columns) = match outcome {
        Outcome::Executed(x) if x.error.is_none() => (None, Some(&x.columns)),
        Outcome::Described(Ok(d)) => (Some(&d.params), None),
        _ => return,
    };
    names.confirm(name, params, columns);
}

/// A request that prepared a statement and failed, or that ran one the server no longer
/// knows (or whose plan is stale): its name is forgotten, and closed with the next request
/// when the server may still hold it. A batch that failed forgets every statement it
/// prepared (those after the failure were never parsed; closing them is harmless).
fn forget_stale(
    names: &mut PipelineNames,
    to_close: &mut Vec<Arc<str>>,
    plans: &Plans,
    outcome: &Outcome,
) {
    let (err, failed) = match outcome {
        Outcome::Described(Err(db)) => (Some(&**db), 0),
        Outcome::Executed(x) => (x.error.as_deref(), 0),
        Outcome::Batch(a) => match a.error() {
            Some(x) => (x.as_db_error(), x.batch_index().unwrap_or(0)),
            None => return,
        },
        Outcome::Described(Ok(_)) | Outcome::Reset { .. } => (None, 0),
    };
    let batch = matches!(outcome, Outcome::Batch(_));
    if err.is_none() && !batch {
        return;
    }
    let mut prepared = false;
    for (sql, name) in plans.iter().filter_map(|p| p.prepares.as_ref()) {
        prepared = true;
        names.forget(sql, name);
        // The Parse may have succeeded and the Bind failed: close it either way.
        to_close.push(name.clone());
    }
    if prepared && !batch {
        return;
    }
    let failing = plans.iter().nth(failed);
    if let (Some(err), Some(name)) = (err, failing.and_then(|p| p.uses.as_ref())) {
        if crate::conn::stale_statement(err) && !to_close.contains(name) {
            if err.code() == crate::error::sqlstate::INVALID_SQL_STATEMENT_NAME {
                // The server no longer has a statement the pool prepared: something ran
                // DEALLOCATE (a function, where no tag shows it), most likely of them all.
                // Every name of the connection is forgotten, and closed in case some
                // remain: each statement is prepared again, not bound to and failed.
                to_close.extend(names.take_all());
            } else {
                names.forget_name(name);
                to_close.push(name.clone());
            }
        }
    }
}
