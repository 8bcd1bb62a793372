//! Command-line and environment configuration of the `mock-anthropic` binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use mock_anthropic::MockConfig;

/// A scriptable mock of the Anthropic Messages API.
#[derive(Debug, Clone, Parser)]
#[command(name = "mock-anthropic", version, about)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "MOCK_ANTHROPIC_ADDR", default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
    /// JSON file holding an array of replies served before the keyword rules.
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// The mock's configuration, script loaded.
    pub mock: MockConfig,
}

impl Config {
    /// Loads the script file, if any.
    pub fn validate(self) -> mock_anthropic::Result<Settings> {
        let mock = match &self.script {
            Some(path) => MockConfig::from_script_file(path)?,
            None => MockConfig::default(),
        };
        Ok(Settings {
            addr: self.addr,
            mock,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use mock_anthropic::Reply;

    use super::*;

    #[test]
    fn defaults_to_a_free_local_port_and_no_script() {
        let settings = Config::try_parse_from(["mock-anthropic"])
            .expect("parses")
            .validate()
            .expect("valid");
        assert_eq!(settings.addr.to_string(), "127.0.0.1:0");
        assert!(settings.mock.script.is_empty());
    }

    #[test]
    fn loads_a_script_and_rejects_a_bad_one() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        write!(file, r#"[{{"type":"text","text":"hi"}}]"#).expect("write");
        let path = file.path().to_str().expect("utf-8 path").to_owned();
        let path = path.as_str();
        let config =
            Config::try_parse_from(["mock-anthropic", "--addr", "127.0.0.1:9", "--script", path])
                .expect("parses");
        let settings = config.validate().expect("valid");
        assert_eq!(settings.mock.script, [Reply::text("hi")]);
        assert_eq!(settings.addr.port(), 9);

        write!(file, "oops").expect("write");
        let config = Config::try_parse_from(["mock-anthropic", "--script", path]).expect("parses");
        let err = config.validate().expect_err("bad JSON is refused");
        assert!(err.to_string().starts_with("invalid script"), "{err}");
        assert!(Config::try_parse_from(["mock-anthropic", "--addr", "nowhere"]).is_err());
    }
}
