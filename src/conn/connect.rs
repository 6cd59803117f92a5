//! Opening a session on one host: the socket, TLS as the sslmode asks, the startup and
//! authentication exchanges, and the first messages of the session.

use super::*;

impl Connection {
    /// One host, with the sslmode's order of attempts: `allow` tries plain, then TLS if
    /// the server refuses; `prefer` tries TLS, then plain if the handshake fails (a server
    /// answering `N` to SSLRequest goes on in plain at once). An ErrorResponse in answer to
    /// SSLRequest is a closed error under every mode, never a reason to go on in plain.
    pub(super) async fn connect_host(
        cfg: &ConnectConfig,
        i: usize,
        host: &Host,
        notices: Option<&NoticeHandler>,
    ) -> Result<Connection> {
        use negotiate::Want;
        match cfg.tls().mode {
            SslMode::Disable => Self::start_session(cfg, i, host, notices, Want::Plain).await,
            SslMode::Allow => match Self::start_session(cfg, i, host, notices, Want::Plain).await {
                Err(e)
                    if cfg!(feature = "tls")
                        && e.as_db_error().is_some()
                        && matches!(host, Host::Tcp(_)) =>
                {
                    Self::start_session(cfg, i, host, notices, Want::Tls).await
                }
                r => r,
            },
            SslMode::Prefer => match Self::start_session(cfg, i, host, notices, Want::TryTls).await
            {
                Err(e) if e.kind() == crate::ErrorKind::Tls => {
                    tracing::debug!(target: "wirepool::conn", "TLS failed, connecting in plain text (sslmode=prefer): {}", crate::error::chain(&e));
                    Self::start_session(cfg, i, host, notices, Want::Plain).await
                }
                r => r,
            },
            _ => Self::start_session(cfg, i, host, notices, Want::Tls).await,
        }
    }

    /// A socket, TLS as `want` says, then startup and authentication.
    pub(super) async fn start_session(
        cfg: &ConnectConfig,
        i: usize,
        host: &Host,
        notices: Option<&NoticeHandler>,
        want: negotiate::Want,
    ) -> Result<Connection> {
        let port = cfg.ports()[i];
        // A provider's password is fetched for this attempt and dropped with `startup`.
        let provided = match cfg.password_provider() {
            Some(p) => Some(p.fetch().await?),
            None => None,
        };
        // Else the settings' password, else the password file's line for this host.
        let from_file = match (&provided, cfg.password()) {
            (None, None) => cfg.passfile_password(i),
            _ => None,
        };
        let password = provided
            .as_deref()
            .or(cfg.password())
            .or(from_file.as_deref());
        let opened = negotiate::open(cfg, i, host, port, want).await?;
        let stream = opened.stream;
        let tls_end_point = opened.end_point;
        let mut write_buf = BytesMut::with_capacity(WRITE_CHUNK);
        let mut startup = Startup::start(
            &StartupParams {
                user: cfg.user(),
                database: cfg.dbname(),
                password: password.map(str::as_bytes),
                application_name: cfg.application_name(),
                options: cfg.options(),
                channel_binding: match cfg.tls().channel_binding {
                    crate::config::ChannelBinding::Disable => BindingMode::Disable,
                    crate::config::ChannelBinding::Prefer => BindingMode::Prefer,
                    crate::config::ChannelBinding::Require => BindingMode::Require,
                },
                tls_end_point: tls_end_point.as_deref(),
                encrypted: opened.info.is_some(),
                max_protocol: cfg.max_protocol_version(),
                min_protocol: cfg.min_protocol_version(),
                require_auth: cfg.require_auth(),
                replication: cfg.is_replication().then_some("database"),
            },
            &mut write_buf,
        )?;
        let mut conn = Connection {
            stream,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf,
            decoder: FrameDecoder::new(cfg.max_message_size()),
            transaction_status: TransactionStatus::Idle,
            pending: 0,
            big_buffers: false,
            extended: 0,
            owes_sync: false,
            batch_open: false,
            copies_owed: 0,
            batch_commit_sent: false,
            origin_end: session::OriginEnd::Never,
            dblink_close: None,
            in_flight: false,
            broken: false,
            dirt: session::Dirt::CLEAN,
            last_reported: None,
            settings_changed: false,
            session_restore: None,
            restore_captured: false,
            hook_settings: None,
            kind_reported: false,
            kind_changed: false,
            command_timeout: None,
            timer: None,
            on_timeout: None,
            statements: cache::StatementCache::new(cache::DEFAULT_CAPACITY),
            pipeline_names: Default::default(),
            types: Arc::default(),
            type_scope: format!("{host}:{port}/{}", cfg.dbname()).into(),
            last_description: None,
            foreign_encoding: None,
            auth_method: AuthMethod::Trust,
            protocol_version: cfg.max_protocol_version(),
            parameters: HashMap::new(),
            tls_info: opened.info,
            server_addr: format!("{host}:{port}"),
            dbname: cfg.dbname().into(),
            host_name: host.to_string().into(),
            // The handler the connection is opened for gets the startup's notices too.
            trace: match notices {
                Some(h) => Arc::new(TraceSettings {
                    notices: Some(h.clone()),
                    ..TraceSettings::default()
                }),
                None => Arc::default(),
            },
            checkout: None,
            checkout_wait: Default::default(),
            abandoned: false,
            portal_seq: 0,
            dropped_portals: Default::default(),
            notifications: Default::default(),
            startup_notices: Vec::new(),
            target: crate::config::TargetSessionAttrs::Any,
            cancel: CancelToken {
                host: host.clone(),
                addr: cfg.hostaddr(i),
                port,
                process_id: 0,
                secret_key: bytes::Bytes::new(),
                timeout: cfg.connect_timeout().unwrap_or(Duration::from_secs(10)),
                #[cfg(feature = "tls")]
                tls: opened.connector,
            },
        };
        conn.flush().await?;
        let mut msg = conn.first_startup_message(host, port).await?;
        let mut gss = gss::GssAuth::new(cfg.krbsrvname(), host);
        loop {
            match auth_step::step(&mut startup, &mut gss, msg, &mut conn.write_buf).await {
                Ok(StartupStatus::Continue | StartupStatus::Gss(_)) => conn.flush().await?,
                Ok(StartupStatus::Ready(info)) => {
                    for n in info.notices {
                        conn.startup_notice(n);
                    }
                    conn.transaction_status = info.transaction_status;
                    conn.auth_method = info.auth_method;
                    conn.protocol_version = info.protocol_version;
                    for (name, value) in info.parameters {
                        conn.note_parameter(name, value);
                    }
                    if let Some(enc) = conn.foreign_encoding.take() {
                        return Err(Error::encoding(format!(
                            "the server set client_encoding to {} for this session (role, database or options setting); wirepool reads and writes only UTF8",
                            crate::error::Escaped(&enc)
                        )));
                    }
                    conn.cancel.process_id = info.process_id;
                    conn.cancel.secret_key = info.secret_key;
                    // What the server reported at startup is the session's starting point
                    // (its kind is checked by the host selection).
                    conn.dirt = session::Dirt::CLEAN;
                    conn.kind_reported = false;
                    return Ok(conn);
                }
                Err(e) => {
                    conn.broken = true;
                    return Err(e);
                }
            }
            msg = conn.read_message().await?;
        }
    }

    /// The server's first answer to the startup message: an authentication request, an
    /// error, a notice or NegotiateProtocolVersion. Anything else (an HTTP server's
    /// `HTTP/1.1 400`, say) means the server does not speak the PostgreSQL protocol.
    pub(super) async fn first_startup_message(
        &mut self,
        host: &Host,
        port: u16,
    ) -> Result<BackendMessage> {
        let not_postgres = |buf: &[u8], why: String| {
            Error::protocol(format!(
                "the server at {host}:{port} does not speak the PostgreSQL protocol (it answered {}): {why}",
                preview(buf)
            ))
        };
        match self.read_message().await {
            Ok(
                m @ (BackendMessage::AuthenticationOk
                | BackendMessage::AuthenticationCleartextPassword
                | BackendMessage::AuthenticationMd5Password { .. }
                | BackendMessage::AuthenticationSasl { .. }
                | BackendMessage::AuthenticationGss
                | BackendMessage::AuthenticationUnsupported { .. }
                | BackendMessage::ErrorResponse(_)
                | BackendMessage::NoticeResponse(_)
                | BackendMessage::NegotiateProtocolVersion { .. }),
            ) => Ok(m),
            Ok(other) => Err(not_postgres(
                other.name().as_bytes(),
                "not a reply to a startup message".into(),
            )),
            Err(e) if e.is_protocol() => Err(not_postgres(&self.read_buf, e.to_string())),
            Err(e) => Err(e),
        }
    }
}
