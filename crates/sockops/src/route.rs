//! The kernel route as one value: the marks and the two programs that share them,
//! loaded together and attached together, the marking program first so that no
//! connection is ever judged without it.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use keepalive_config::Config;

use crate::storage::Marks;
use crate::sys::{Error, Hook, Link, Program};
use crate::{setsockopt, sock_ops};

#[derive(Debug)]
pub struct Route {
    mark: Program,
    sock_ops: Program,
    marks: Marks,
}

/// The route's two attachments made with [`Route::link`]; dropping them detaches it.
#[derive(Debug)]
pub struct Links {
    _sock_ops: Link,
    _mark: Link,
}

/// A route half attached ([`Route::begin`]): the marking program runs for the cgroup,
/// the settings program not yet. Dropped without [`Pending::finish`], it detaches the
/// marking program again.
#[derive(Debug)]
pub struct Pending<'a> {
    route: &'a Route,
    cgroup: BorrowedFd<'a>,
    finished: bool,
}

impl Route {
    /// Loads the route for `config`. On a kernel built with MPTCP (it shows
    /// /proc/sys/net/mptcp) the settings program leaves MPTCP subflows alone
    /// ([`crate::sock_ops`]); elsewhere there are none, and the helper that tells them
    /// apart may be missing.
    pub fn load(config: &Config) -> Result<Route, Error> {
        let marks = Marks::create()?;
        let fd = marks.as_fd().as_raw_fd();
        let mptcp = std::path::Path::new("/proc/sys/net/mptcp").exists();
        Ok(Route {
            mark: Program::load(Hook::SetSockOpt, &setsockopt::build(fd))?,
            sock_ops: Program::load(Hook::SockOps, &sock_ops::build(config, fd, mptcp))?,
            marks,
        })
    }

    /// Attaches the route to `cgroup` for as long as the returned [`Links`] live, or
    /// this process does ([`Program::link`]).
    pub fn link(&self, cgroup: BorrowedFd) -> Result<Links, Error> {
        let mark = self.mark.link(cgroup)?;
        Ok(Links {
            _sock_ops: self.sock_ops.link(cgroup)?,
            _mark: mark,
        })
    }

    /// Attaches the route to `cgroup` for as long as the cgroup exists
    /// ([`Program::attach`]); a failure leaves nothing attached.
    pub fn attach(&self, cgroup: BorrowedFd) -> Result<(), Error> {
        self.begin(cgroup)?.finish()
    }

    /// The first half of [`Route::attach`], for a cgroup whose processes already hold
    /// sockets: from here on every keepalive option they set is marked, and the
    /// sockets configured before can be marked with [`Pending::mark_all`] before the
    /// settings program judges any connection.
    pub fn begin<'a>(&'a self, cgroup: BorrowedFd<'a>) -> Result<Pending<'a>, Error> {
        self.mark.attach(cgroup)?;
        Ok(Pending {
            route: self,
            cgroup,
            finished: false,
        })
    }
}

impl Pending<'_> {
    /// Marks every option of `socket` as its program's own ([`Marks::mark_all`]).
    pub fn mark_all(&self, socket: BorrowedFd) -> Result<(), Error> {
        self.route.marks.mark_all(socket)
    }

    /// Attaches the settings program; a failure leaves nothing attached.
    pub fn finish(mut self) -> Result<(), Error> {
        self.route.sock_ops.attach(self.cgroup)?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // A failed undo leaves a program that only marks sockets: harmless, and
            // removed with the cgroup.
            let _ = self.route.mark.detach(self.cgroup);
        }
    }
}
