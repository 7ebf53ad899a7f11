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
}

/// The route's two attachments made with [`Route::link`]; dropping them detaches it.
#[derive(Debug)]
pub struct Links {
    _sock_ops: Link,
    _mark: Link,
}

impl Route {
    /// Loads the route for `config`. The map needs no descriptor of its own once both
    /// programs hold it.
    pub fn load(config: &Config) -> Result<Route, Error> {
        let marks = Marks::create()?;
        let fd = marks.as_fd().as_raw_fd();
        Ok(Route {
            mark: Program::load(Hook::SetSockOpt, &setsockopt::build(fd))?,
            sock_ops: Program::load(Hook::SockOps, &sock_ops::build(config, fd))?,
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
        self.mark.attach(cgroup)?;
        self.sock_ops.attach(cgroup).inspect_err(|_| {
            // The error to report is the attach's; a failed undo leaves a program
            // that only marks sockets, harmless, and removed with the cgroup.
            let _ = self.mark.detach(cgroup);
        })
    }
}
