import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Collections;
import java.util.concurrent.CountDownLatch;

import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;

/**
 * Starts one OpenSearch node in this JVM, the way the distribution's Bootstrap does,
 * minus its process-level checks (root refusal, memory locking, security manager):
 * a test node on a developer machine or CI runner that may run as root.
 *
 * Modules and plugins load as real bundles from path.home/modules and path.home/plugins,
 * each in its own class loader, with jar-hell checks against this JVM's class path.
 */
public final class LocalNode {
    private LocalNode() {}

    public static void main(String[] args) throws Exception {
        Path home = Paths.get(System.getProperty("opensearch.path.home"));
        Path config = Paths.get(System.getProperty("opensearch.path.conf"));
        Settings initial = Settings.builder().put("path.home", home.toString()).build();
        Environment environment = InternalSettingsPreparer.prepareEnvironment(
            initial, Collections.emptyMap(), config, () -> "local-1");
        LogConfigurator.setNodeName(Node.NODE_NAME_SETTING.get(environment.settings()));
        LogConfigurator.configure(environment);

        Node node = new Node(environment);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "local-node-shutdown"));
        node.start();
        stopped.await();
    }
}
