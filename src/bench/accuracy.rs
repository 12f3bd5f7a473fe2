//! `relaytop bench accuracy`: placeholder.
#[derive(clap::Args, Debug, Clone)]
pub struct AccuracyArgs {}
pub async fn run(_a: &AccuracyArgs, _o: &mut (dyn std::io::Write + Send)) -> anyhow::Result<()> {
    Ok(())
}
