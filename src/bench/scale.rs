//! `relaytop bench scale`: placeholder.
#[derive(clap::Args, Debug, Clone)]
pub struct ScaleArgs {}
pub async fn run(_a: &ScaleArgs, _o: &mut (dyn std::io::Write + Send)) -> anyhow::Result<()> {
    Ok(())
}
