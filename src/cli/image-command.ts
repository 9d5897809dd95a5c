import type { Command } from 'commander';
import { isCurrentImage } from '../image/image.js';
import { buildDefaultImage, imageRecipe } from '../image/build.js';
import { defaultDataDir, defaultImageDir } from '../util/paths.js';

export function registerImageCommands(program: Command): void {
  const image = program.command('image').description('build and inspect guest images');
  image
    .command('build')
    .description("build the default guest image from Debian's packages (cloud kernel, busybox, sshvisor-agent)")
    .option('--out <dir>', 'where to write the image', undefined)
    .option('--data-dir <dir>', 'data directory (the image goes to DATA_DIR/images/default)', defaultDataDir())
    .option('--if-missing', 'do nothing if a current image is already there')
    .action(async (opts: { out?: string; dataDir: string; ifMissing?: boolean }) => {
      const out = opts.out ?? defaultImageDir(opts.dataDir);
      if (opts.ifMissing && isCurrentImage(out, imageRecipe())) {
        process.stdout.write(`guest image already built in ${out} (\`sshvisor image build\` rebuilds it)\n`);
        return;
      }
      const started = Date.now();
      const manifest = await buildDefaultImage(out, (step) => process.stderr.write(`image: ${step}\n`));
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      process.stdout.write(`built ${out} in ${secs}s: kernel ${manifest.kernel.release}, ${manifest.modules.length} modules\n`);
    });
}
